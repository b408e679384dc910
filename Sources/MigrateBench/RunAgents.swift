import Glibc
import MigrateAgent
import MigrateDemo

/// What every benchmark run does with its agents, whatever else it starts
/// (`AgentPair`, `HandlerModePair`): start the source and wait for its
/// `listening on`, and, once the run is over, accept its exits and reports
/// only if both agents succeeded. Threading: the controlling thread only.
enum RunAgents {
    /// How long a source may take to fill its memory and listen.
    static let listenSeconds = 120.0

    /// Starts the source (`command`: the binary or `ip netns exec`, and its
    /// arguments) and returns it with the address it listens on; kills it and
    /// names the run when no address comes within `listenSeconds`.
    static func startSource(_ command: (String, [String]), label: String, log: String) throws(AgentError) -> (AgentProcess, String) {
        let source = try AgentProcess(executable: command.0, arguments: command.1, stderrPath: log)
        guard let address = source.awaitLine(prefix: "listening on ", seconds: listenSeconds) else {
            source.stop(signal: SIGKILL)
            throw .migrationFailed("\(label): the source did not start listening within \(Int(listenSeconds)) s\n"
                + source.stderrTail(name: "source"))
        }
        return (source, address)
    }

    /// Both agents' reports, if both exited 0 within their deadlines, wrote a
    /// readable report, and the destination reports success; otherwise the
    /// first thing that went wrong, through `failure` (which adds the logs).
    static func reports(destination: AgentProcess, exit destinationExit: Int32?, report d: DestinationReport?,
                        source: AgentProcess, exit sourceExit: Int32?, report s: SourceReport?,
                        timeoutSeconds: Double, failure: (String) -> AgentError) throws(AgentError) -> (DestinationReport, SourceReport) {
        guard let destinationExit else { throw failure("the destination did not finish within \(timeoutSeconds) s (killed)") }
        guard destinationExit == 0 else { throw failure("the destination \(destination.exitDescription): \(d?.error ?? "no report")") }
        guard let sourceExit else { throw failure("the source did not exit after the destination finished (killed)") }
        guard sourceExit == 0 else { throw failure("the source \(source.exitDescription): \(s?.error ?? "no report")") }
        guard let d else { throw failure("the destination wrote no readable report") }
        guard let s else { throw failure("the source wrote no readable report") }
        guard d.succeeded, d.error == nil else { throw failure("the destination reports a failure: \(d.error ?? "?")") }
        return (d, s)
    }
}
