import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import MigrateDemo

/// What the benchmark needs of its child processes (sources, destinations and
/// the loopback server) beyond `AgentProcess`, which it starts with
/// `stderrPath` so that each child's progress lines go to a log of its own.
/// Threading: the benchmark's controlling thread.
extension AgentProcess {
    /// Sends `signal` if the child still runs, then reaps it (SIGKILL after 5 s).
    func stop(signal: Int32 = SIGTERM) {
        terminate(signal: signal)
        _ = wait(seconds: 5)
    }

    /// How an exited child ended, for a failure message: "exited with status N" or "was killed by signal N".
    var exitDescription: String {
        switch ending {
        case nil: "is still running"
        case .signal(let number): "was killed by signal \(number)"
        case .exit(let status): "exited with status \(status)"
        }
    }
}
