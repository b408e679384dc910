import MigrateAgent
import Testing

/// The agents' CPU reading: work on this process shows up in it, and a
/// difference of two readings never goes negative.
struct ProcessCPUTests {
    @Test func workOnTheCallingThreadIsCounted() {
        let start = ProcessCPU.current()
        var x: UInt64 = 1
        let until = EventLoop.nowNanos() + 50_000_000  // 50 ms of arithmetic
        while EventLoop.nowNanos() < until { for i in 0..<1000 { x = x &* 6364136223846793005 &+ UInt64(i) } }
        let used = ProcessCPU.current().since(start)
        #expect(x != 0)
        // The clock ran 50 ms; on a loaded machine this thread may have had less of a CPU.
        #expect(used.totalSeconds > 0.005, "\(used)")
        #expect(used.userSeconds >= 0 && used.systemSeconds >= 0)
    }

    @Test func aLaterReadingMinusAnEarlierOneIsNeverNegative() {
        let later = ProcessCPU(userSeconds: 1, systemSeconds: 0.5)
        let earlier = ProcessCPU(userSeconds: 1.5, systemSeconds: 0.25)
        #expect(later.since(earlier) == ProcessCPU(userSeconds: 0, systemSeconds: 0.25))
    }
}
