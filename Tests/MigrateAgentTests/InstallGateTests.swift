import Dispatch
@testable import MigrateAgent
import Synchronization
import SyntheticGuest
import Testing

/// The gate between the loop's reads of a VMM's userfaultfd and the installer's
/// copies: two real threads hammer it, each checking that the other is never
/// inside while it is. Every wait has a deadline.
@Suite("the install gate")
struct InstallGateTests {
    /// Shared by the two threads: who is inside, and what each saw.
    private final class Shared: @unchecked Sendable {
        let gate = InstallGate()
        let copying = Atomic<Bool>(false)
        let reading = Atomic<Bool>(false)
        let overlaps = Atomic<Int>(0)
        let copies = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
    }

    @Test("the loop never reads while a copy is in flight, and no copy starts while the loop reads")
    func mutualExclusion() {
        let shared = Shared()
        let rounds = 20_000
        let worker = DeadlineThread("gate-worker") { [shared] in
            while !shared.stop.load(ordering: .acquiring) {
                shared.gate.enter()
                shared.copying.store(true, ordering: .sequentiallyConsistent)
                if shared.reading.load(ordering: .sequentiallyConsistent) { shared.overlaps.add(1, ordering: .relaxed) }
                for _ in 0..<50 { _ = shared.reading.load(ordering: .relaxed) }  // a copy takes a while
                shared.copying.store(false, ordering: .sequentiallyConsistent)
                shared.gate.leave()
                shared.copies.add(1, ordering: .relaxed)
            }
            return true
        }
        let loop = DeadlineThread("gate-loop") { [shared] () -> Bool in
            // Until both sides went through often enough (the worker may start late), within 30 s.
            let deadline = DispatchTime.now().uptimeNanoseconds + 30_000_000_000
            var round = 0
            while round < rounds || shared.copies.load(ordering: .relaxed) < rounds / 10 {
                guard DispatchTime.now().uptimeNanoseconds < deadline else { return false }
                round += 1
                shared.gate.close()
                shared.reading.store(true, ordering: .sequentiallyConsistent)
                if shared.copying.load(ordering: .sequentiallyConsistent) { shared.overlaps.add(1, ordering: .relaxed) }
                for _ in 0..<20 { _ = shared.copying.load(ordering: .relaxed) }
                shared.reading.store(false, ordering: .sequentiallyConsistent)
                shared.gate.open()
            }
            return true
        }
        let finished = loop.join(within: 60)
        shared.stop.store(true, ordering: .releasing)
        #expect(worker.join(within: 10) == true, "the worker stayed stuck at the gate")
        #expect(finished == true,
                "the loop did not get through \(rounds) closes, with \(rounds / 10) copies between them, within 30 s")
        #expect(shared.overlaps.load(ordering: .relaxed) == 0, "one side was inside while the other was")
    }

    @Test("a worker waiting at a closed gate goes on once it opens")
    func closedGateHoldsTheWorker() {
        let shared = Shared()
        shared.gate.close()
        let entered = DispatchSemaphore(value: 0)
        let worker = DeadlineThread("gate-worker") { [shared] in
            shared.gate.enter()
            let wasOpen = !shared.reading.load(ordering: .sequentiallyConsistent)
            shared.gate.leave()
            entered.signal()
            return wasOpen
        }
        // While closed it must not get in: `reading` stays true until just before `open`.
        shared.reading.store(true, ordering: .sequentiallyConsistent)
        let early = entered.wait(timeout: .now() + 0.05) == .success
        shared.reading.store(false, ordering: .sequentiallyConsistent)
        shared.gate.open()
        #expect(!early, "the worker got through a closed gate")
        #expect(worker.join(within: 10) == true, "the worker did not get through once the gate opened, or saw it closed")
    }
}
