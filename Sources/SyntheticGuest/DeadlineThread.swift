import MigrateAgent
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// A thread of our own that runs `body` once and is joined with a deadline.
/// Memory that may fault into a userfaultfd is touched only from such threads,
/// so the controlling thread can always give up (and release the range)
/// instead of blocking with the faulting thread.
/// Threading: created and joined by one controlling thread; the result is
/// written once by the thread before it signals.
public final class DeadlineThread<Result: Sendable>: @unchecked Sendable {
    public let name: String
    private let finished = DispatchSemaphore(value: 0)
    /// The thread's result once it returned, and whether a join saw it finish.
    private let state = Mutex<(result: Result?, joined: Bool)>((nil, false))

    /// Starts the thread now. `body` must keep alive what it touches.
    public init(_ name: String, _ body: @escaping @Sendable () -> Result) {
        self.name = name
        startThread(named: name) { [self] in
            let value = body()
            state.withLock { $0.result = value }
            finished.signal()
        }
    }

    /// The result, or nil when the thread is still running at `deadline`.
    public func join(until deadline: DispatchTime) -> Result? {
        if !state.withLock({ $0.joined }) {
            guard finished.wait(timeout: deadline) == .success else { return nil }
            state.withLock { $0.joined = true }
        }
        return state.withLock { $0.result }
    }

    /// The result, or nil when the thread is still running after `seconds`.
    public func join(within seconds: Double) -> Result? { join(until: .now() + seconds) }
}
