import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import Synchronization

/// The guest threads of one check: Foundation threads that only touch guest
/// memory, each running its own list of touches. They are released together
/// (so faults on a shared page overlap) and joined with a deadline: a thread
/// blocked on a fault nobody resolves never returns by itself, so the caller
/// must be able to give up, release the backend and report.
///
/// Threading: `start`, `wait` and the accessors run on one controlling thread.
final class GuestThreadGroup {
    /// What each thread found wrong; nil until the thread has finished.
    private final class Outcomes: Sendable {
        let slots: Mutex<[[String]?]>
        init(count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }
    }

    let names: [String]
    private let plans: [[GuestTouch]]
    private let arena: Arena
    private let outcomes: Outcomes
    private let finished = DispatchSemaphore(value: 0)
    private var joined = 0

    init(label: String, plans: [[GuestTouch]], arena: Arena) {
        self.plans = plans
        self.arena = arena
        names = plans.indices.map { "\(label)-\($0)" }
        outcomes = Outcomes(count: plans.count)
    }

    /// Starts every thread; they begin touching memory together once all exist.
    func start() {
        let gate = DispatchSemaphore(value: 0)
        for (index, plan) in plans.enumerated() {
            // The closure keeps the arena alive: a thread may still be blocked in it after the check gave up.
            startThread(named: names[index]) { [arena, outcomes, finished] in
                gate.wait()
                let problems = plan.compactMap { $0.perform(on: arena) }
                outcomes.slots.withLock { $0[index] = problems }
                finished.signal()
            }
        }
        for _ in plans { gate.signal() }
    }

    /// Waits until every thread has finished or `deadline` passes; true when all finished.
    func wait(until deadline: DispatchTime) -> Bool {
        while joined < plans.count {
            guard finished.wait(timeout: deadline) == .success else { return false }
            joined += 1
        }
        return true
    }

    /// Whether every thread has finished, without waiting.
    var hasFinished: Bool { wait(until: .now()) }

    /// Threads still running (blocked, as far as a check can tell).
    var unfinished: [String] {
        outcomes.slots.withLock { slots in slots.indices.filter { slots[$0] == nil }.map { names[$0] } }
    }

    /// Every problem the finished threads reported, in thread order.
    var problems: [String] {
        outcomes.slots.withLock { $0.compactMap { $0 }.flatMap { $0 } }
    }
}
