import MigrateAgent
import Testing

/// The busy-poll window: demand activity opens one, a suspended poller opens none
/// (the source while its stream is written), and a window of 0 never polls.
struct BusyPollTests {
    @Test func demandOpensAWindowUnlessSuspended() throws {
        let loop = try EventLoop()
        let poll = BusyPoll(loop: loop, windowMicros: 1_000_000)  // a second: still open when checked
        defer { poll.close() }
        #expect(!poll.isPolling)
        poll.isSuspended = true
        poll.extend(from: EventLoop.nowNanos())
        #expect(!poll.isPolling)
        poll.isSuspended = false
        poll.extend(from: EventLoop.nowNanos())
        #expect(poll.isPolling)
    }

    @Test func aWindowOfZeroNeverPolls() throws {
        let loop = try EventLoop()
        let poll = BusyPoll(loop: loop, windowMicros: 0)
        defer { poll.close() }
        poll.extend(from: EventLoop.nowNanos())
        #expect(!poll.isPolling)
    }
}
