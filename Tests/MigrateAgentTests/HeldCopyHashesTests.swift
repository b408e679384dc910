import Dispatch
@testable import MigrateAgent
import SyntheticGuest
import Synchronization
import Testing

/// The stale copies' hashes taken ahead after a hybrid switch-over: on a real
/// loop turn by turn, or at once for a page asked for first. No kernel feature
/// is involved: the copies are plain memory here.
struct HeldCopyHashesTests {
    /// Counts the pages hashed, and gives each a hash of its own.
    final class Counter: Sendable {
        let calls = Atomic<Int>(0)
        func hash(_ page: Int) -> UInt128 {
            calls.add(1, ordering: .relaxed)
            return UInt128(page) * 0x9E37_79B9_7F4A_7C15
        }
    }

    @Test func aPageAskedForBeforeItsTurnIsHashedThenAndOnce() throws {
        let loop = try EventLoop()
        let counter = Counter()
        let held = HeldCopyHashes(loop: loop, pages: [3, 7, 10, 4000]) { counter.hash($0) }
        #expect(held.hash(of: 7) == UInt128(7) * 0x9E37_79B9_7F4A_7C15)
        #expect(held.hash(of: 7) == UInt128(7) * 0x9E37_79B9_7F4A_7C15)
        #expect(counter.calls.load(ordering: .relaxed) == 1, "hashed at the first ask, kept for the second")
        #expect(held.hash(of: 5) == nil && held.hash(of: 4001) == nil && held.hash(of: 0) == nil, "not stale: nothing held")
        #expect(held.hash(of: 4000) != nil)
    }

    @Test func theLoopHashesEveryStalePageTurnByTurn() throws {
        let loop = try EventLoop()
        let thread = DeadlineThread("held-hashes-loop") { loop.run(); return true }
        let counter = Counter()
        let pages = Array(stride(from: 1, to: 3000, by: 3))  // 1000 pages, more than one turn's slice
        nonisolated(unsafe) var held: HeldCopyHashes?
        let started = DispatchSemaphore(value: 0)
        loop.execute {
            held = HeldCopyHashes(loop: loop, pages: pages) { counter.hash($0) }
            held?.start()
            started.signal()
        }
        #expect(started.wait(timeout: .now() + 10) == .success)
        // Each round trip through the loop lets it take turns; the hashing needs several.
        let deadline = DispatchTime.now() + 10
        while counter.calls.load(ordering: .relaxed) < pages.count, DispatchTime.now() < deadline {
            let turn = DispatchSemaphore(value: 0)
            loop.execute { turn.signal() }
            _ = turn.wait(timeout: deadline)
        }
        #expect(counter.calls.load(ordering: .relaxed) == pages.count, "every stale page hashed once, on the loop")
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var answers: [UInt128?] = []
        loop.execute {
            answers = [held?.hash(of: 1), held?.hash(of: 2998), held?.hash(of: 2)]
            held?.close()
            loop.shutdown()
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(answers == [UInt128(1) * 0x9E37_79B9_7F4A_7C15, UInt128(2998) * 0x9E37_79B9_7F4A_7C15, nil])
        #expect(counter.calls.load(ordering: .relaxed) == pages.count, "taken from what the loop stored, not hashed again")
        #expect(thread.join(within: 10) == true)
    }
}
