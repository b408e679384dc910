import Foundation
@testable import MigrateAgent
import SyntheticGuest
import Testing

@Suite("Loop scheduler slice")
struct LoopSliceTests {
    /// The calling thread's slice in nanoseconds as the scheduler reports it (nil: not reported).
    private static func currentSlice() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/thread-self/sched", encoding: .utf8) else { return nil }
        let line = text.split(separator: "\n").first { $0.hasPrefix("se.slice") }
        return line.flatMap { Int($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) }
    }

    @Test("the slice is set on the calling thread only, or refused with the reason named")
    func setsOrExplains() throws {
        let thread = DeadlineThread("slice-test") { () -> (String?, Int?) in
            let refused = LoopSlice.request(micros: 250)
            return (refused, LoopSliceTests.currentSlice())
        }
        let (refused, slice) = try #require(thread.join(within: 10))
        if let refused {
            print("LoopSliceTests: this kernel refused a custom slice (\(refused)); only the message is checked")
            #expect(refused.contains("250 µs") && refused.contains("Linux 6.12"), "\(refused)")
        } else {
            #expect(slice == 250_000, "the scheduler reports \(slice.map(String.init) ?? "no slice")")
            #expect(LoopSliceTests.currentSlice() != 250_000, "the test's own thread changed too")
        }
    }
}
