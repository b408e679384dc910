import MigrateAgent
import Foundation

/// A thread of our own that runs `body` once and is joined with a deadline.
/// Memory that may fault into a userfaultfd is touched only from such threads,
/// so the controlling thread can always give up (and release the range)
/// instead of blocking with the faulting thread.
/// Threading: created and joined by one controlling thread; the result is
/// written once by the thread before it signals.
public final class DeadlineThread<Result: Sendable>: @unchecked Sendable {
    public let name: String
    private let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var result: Result?
    private var joined = false

    /// Starts the thread now. `body` must keep alive what it touches.
    public init(_ name: String, _ body: @escaping @Sendable () -> Result) {
        self.name = name
        startThread(named: name) { [self] in
            let value = body()
            lock.withLock { result = value }
            finished.signal()
        }
    }

    /// The result, or nil when the thread is still running at `deadline`.
    public func join(until deadline: DispatchTime) -> Result? {
        if !lock.withLock({ joined }) {
            guard finished.wait(timeout: deadline) == .success else { return nil }
            lock.withLock { joined = true }
        }
        return lock.withLock { result }
    }

    /// The result, or nil when the thread is still running after `seconds`.
    public func join(within seconds: Double) -> Result? { join(until: .now() + seconds) }
}
