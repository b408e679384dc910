import MigrateAgent
import Dispatch
import FoundationEssentials
import Glibc

/// Threads that only touch guest memory (never the loop's state), started
/// together and waited for with a deadline: a thread blocked on a fault that
/// nobody resolves never returns by itself, so callers must be able to give up.
final class GuestThreads: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var remaining = 0

    /// Starts `count` threads running `body(threadIndex)`.
    func start(count: Int, name: String, body: @escaping @Sendable (Int) -> Void) {
        remaining = count
        for t in 0..<count {
            startThread(named: "\(name)-\(t)") { [done] in
                body(t)
                done.signal()
            }
        }
    }

    /// Waits until every thread has finished, or `seconds` pass; true when all finished.
    func wait(seconds: Double) -> Bool {
        let deadline = DispatchTime.now() + seconds
        while remaining > 0 {
            guard done.wait(timeout: deadline) == .success else { return false }
            remaining -= 1
        }
        return true
    }
}
