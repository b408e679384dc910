import Dispatch
import MigrateAgent
import Synchronization

/// Runs a backend call that should return at once but could block in the
/// kernel: `rwp`'s `protect` populates pages with `MADV_POPULATE_READ`, which
/// waits on a userfault like any other access (an absent or already protected
/// page), and the calling thread is the only one that would resolve it. If the
/// call has not returned by the deadline, a watchdog releases the backend
/// (`UFFDIO_UNREGISTER` wakes the waiting call) and the check fails.
struct BoundedCall {
    private enum State { case running, returned, releasedByWatchdog }
    private final class Progress: Sendable {
        let state = Mutex(State.running)
    }

    let backend: any ProtectionBackend
    let timeoutSeconds: Double

    /// Calls `body`; records a problem in `findings` when the watchdog had to release the backend.
    /// Returns false in that case (the arena is no longer registered: the check cannot go on).
    func run(_ what: String, findings: inout Findings, _ body: () throws(AgentError) -> Void) throws(AgentError) -> Bool {
        let progress = Progress()
        let watchdog = DispatchWorkItem { [backend] in
            let fire = progress.state.withLock { state in
                guard state == .running else { return false }
                state = .releasedByWatchdog
                return true
            }
            if fire { backend.release() }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds, execute: watchdog)
        defer { watchdog.cancel() }
        var failure: AgentError?
        do { try body() } catch { failure = error }
        let finished = progress.state.withLock { state in
            if state == .running { state = .returned }
            return state == .returned
        }
        if !finished {
            findings.add("\(what) did not return within \(timeoutSeconds) s (blocked on a userfault?); "
                + "a watchdog released the arena with UFFDIO_UNREGISTER")
        }
        if let failure { throw failure }
        return finished
    }
}
