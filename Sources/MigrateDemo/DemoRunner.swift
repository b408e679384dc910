import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import SyntheticGuest

/// `migrate-agent demo`: a source and a destination as two processes on
/// 127.0.0.1, and one report of the pair.
public struct DemoRunner {
    public struct Configuration: Sendable {
        public var arenaSize = 256 << 20
        public var guestThreads = 4
        public var pattern = AccessPattern.random
        public var writeRatio = 0.2
        public var dirtyRate = 20_000
        public var protection: BackendKind?
        public var precopyRounds = 0
        /// The source's warm-up with access tracking (`source --track-seconds`; 0: none), whether the
        /// pages it found hot go first, and the source guest's read pattern meanwhile (nil: it only writes).
        public var trackSeconds = 0.0
        public var hotFirst = true
        public var sourcePattern: AccessPattern?
        /// Both agents seal their connections (`--encrypt`).
        public var encrypt = false
        public var timeoutSeconds = 300.0
        /// The demo's own progress lines (the agents' pids); the CLI prints them on stderr.
        public var progress: @Sendable (String) -> Void = { _ in }
        /// The `migrate-agent` binary started as source and destination
        /// (the CLI passes `AgentProcess.currentExecutable`).
        public var executable: String
        public init(executable: String) { self.executable = executable }
    }

    /// The combined report (`demo --json`).
    public struct Report: Codable, Sendable {
        public var succeeded: Bool
        public var backend: BackendKind?
        public var digestMatch: Bool
        public var demandPages: Int
        public var backgroundPages: Int
        public var faultLatencyMicros: LatencySummary?
        public var elapsedSeconds: Double
        /// Guest paused on the source until it ran on the destination: the source's
        /// pause-to-send plus the destination's apply (the one-way loopback hop is not in it).
        public var downtimeMillis: Double
        public var precopyRounds: [PrecopyRound]
        public var pagesProtectedAtSwitchover: Int
        public var missingFaults: Int
        public var staleFaults: Int
        public var unchangedPages: Int
        /// Exit statuses; nil for an agent ended by a signal or never started.
        public var sourceExit: Int32?
        public var destinationExit: Int32?
        /// How each agent ended: "exited with status 0", "killed by signal 9 (SIGKILL)".
        public var sourceEnded: String?
        public var destinationEnded: String?
        /// The signal (SIGINT, SIGTERM) that interrupted the demo, which then stopped both agents.
        public var interruptedBySignal: Int32?
        public var error: String?
        public var source: SourceReport?
        public var destination: DestinationReport?
    }

    public let configuration: Configuration
    public init(configuration: Configuration) { self.configuration = configuration }

    /// Runs the pair. A failure of either agent, in any phase, stops the other
    /// at once and is reported with the failed agent's own reason; SIGINT or
    /// SIGTERM stops both, removes the temporary directory and returns a report
    /// with `interruptedBySignal` set. Throws when the run cannot start.
    public func run() throws(AgentError) -> Report {
        // Both agents' arenas live on this machine.
        try MemoryBudget.current().check(arenaBytes: configuration.arenaSize, copies: 2)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-demo-\(getpid())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let agents = DemoAgents()
        defer { agents.close() }
        return try run(in: directory, agents: agents)
    }

    private func run(in directory: URL, agents: DemoAgents) throws(AgentError) -> Report {
        let sourceReport = directory.appendingPathComponent("source.json").path
        let destinationReport = directory.appendingPathComponent("destination.json").path
        let deadline = Date(timeIntervalSinceNow: configuration.timeoutSeconds)
        let key = directory.appendingPathComponent("psk").path
        try? FileManager.default.removeItem(atPath: key)  // left by a demo killed with SIGKILL under the same pid
        try PresharedKey.generate(path: key)  // a key per run: the demo never runs insecure
        let arena = "\(configuration.arenaSize)"
        let source = try agents.start(executable: configuration.executable, arguments: [
            "source", "--listen", "127.0.0.1:0", "--arena", arena, "--guest-threads", "2",
            "--dirty-rate", "\(configuration.dirtyRate)", "--report-json", sourceReport,
            "--precopy-rounds", "\(configuration.precopyRounds)", "--psk-file", key,
        ] + (configuration.encrypt ? ["--encrypt"] : []) + workingSetOptions, name: "source")
        configuration.progress("demo: source is process \(source.pid), files in \(directory.path)")
        var destination: AgentProcess?
        func finish(_ error: String?) -> Report {
            DemoAgents.stop(source)
            if let destination { DemoAgents.stop(destination) }
            return report(error: error, interruptedBy: agents.interruptedBy, source: source, destination: destination,
                          sourceReport: sourceReport, destinationReport: destinationReport)
        }
        func interrupted() -> String? {
            agents.interruptedBy.map { "interrupted by \(ReportFormatting.signalName($0)): both agents stopped" }
        }

        guard let address = source.awaitLine(prefix: "listening on ", seconds: deadline.timeIntervalSinceNow) else {
            if let reason = interrupted() { return finish(reason) }
            if source.awaitExit(seconds: 5) != nil { return finish(Self.failure(of: source, named: "source", report: sourceReport)) }
            return finish("the source did not start listening within \(configuration.timeoutSeconds) s")
        }
        var arguments = [
            "destination", "--connect", address, "--arena", arena,
            "--guest-threads", "\(configuration.guestThreads)", "--pattern", configuration.pattern.rawValue,
            "--write-ratio", "\(configuration.writeRatio)", "--report-json", destinationReport, "--psk-file", key,
        ]
        if let protection = configuration.protection { arguments += ["--protection", protection.rawValue] }
        if configuration.encrypt { arguments.append("--encrypt") }
        do {
            destination = try agents.start(executable: configuration.executable, arguments: arguments, name: "destination")
        } catch {
            _ = finish(nil)
            throw error
        }
        let pair = [("source", source, sourceReport), ("destination", destination!, destinationReport)]
        configuration.progress("demo: destination is process \(destination!.pid)")

        // Until the first agent ends.
        agents.wait(until: deadline) { source.hasExited || destination!.hasExited }
        if let reason = interrupted() { return finish(reason) }
        let ended = pair.filter { $0.1.hasExited }.sorted { ($0.1.exitedAtNanos ?? 0) < ($1.1.exitedAtNanos ?? 0) }
        guard let first = ended.first else {
            return finish("the migration did not finish within \(configuration.timeoutSeconds) s (--timeout); both agents stopped")
        }
        guard first.1.ending?.succeeded == true else {
            return finish(Self.failure(of: first.1, named: first.0, report: first.2))
        }
        // The first ended well: the other follows within a few seconds (the source
        // exits once the destination said done; the destination right after).
        let (name, other, otherReport) = pair.first { $0.1 !== first.1 }!
        let grace = Date(timeIntervalSinceNow: Self.secondAgentGraceSeconds)
        agents.wait(until: grace) { other.hasExited }
        if let reason = interrupted() { return finish(reason) }
        guard other.hasExited else {
            return finish("the \(name) did not exit within \(Self.secondAgentGraceSeconds) s after the \(first.0) finished; stopped")
        }
        guard other.ending?.succeeded == true else { return finish(Self.failure(of: other, named: name, report: otherReport)) }
        return finish(nil)
    }

    /// How long the second agent may take to exit after the first ended well.
    static let secondAgentGraceSeconds = 30.0

    /// Why an agent failed, in its own words when it said them: its `error:`
    /// line, else the error in its report, else how it ended.
    static func failure(of agent: AgentProcess, named name: String, report path: String) -> String {
        let ending = agent.ending
        if case .signal = ending { return "the \(name) was \(ending!)" }
        let reportError: String? = if name == "source" {
            ReportFormatting.read(SourceReport.self, fromFile: path)?.error
        } else {
            ReportFormatting.read(DestinationReport.self, fromFile: path)?.error
        }
        if let reason = agent.errorLine ?? reportError { return "the \(name) failed: \(reason)" }
        return "the \(name) \(ending.map(\.description) ?? "did not exit")"
    }

    /// The source's options for `trackSeconds`, `hotFirst` and `sourcePattern`.
    var workingSetOptions: [String] {
        (configuration.sourcePattern.map { ["--guest-pattern", $0.rawValue] } ?? [])
            + (configuration.trackSeconds > 0 ? ["--track-seconds", "\(configuration.trackSeconds)"] : [])
            + (configuration.hotFirst ? [] : ["--no-hot-first"])
    }

    private func report(error: String?, interruptedBy: Int32?, source: AgentProcess, destination: AgentProcess?,
                        sourceReport: String, destinationReport: String) -> Report {
        let s = ReportFormatting.read(SourceReport.self, fromFile: sourceReport)
        let d = ReportFormatting.read(DestinationReport.self, fromFile: destinationReport)
        var error = error
        if error == nil, d?.digestMatch != true { error = d?.error ?? "the destination reported no digest match" }
        func status(_ agent: AgentProcess?) -> Int32? {
            if case .exit(let status)? = agent?.ending { return status } else { return nil }
        }
        return Report(
            succeeded: error == nil && d?.digestMatch == true,
            backend: d?.backend, digestMatch: d?.digestMatch ?? false,
            demandPages: d?.demandPages ?? 0, backgroundPages: d?.backgroundPages ?? 0,
            faultLatencyMicros: d?.faultLatencyMicros, elapsedSeconds: d?.elapsedSeconds ?? 0,
            downtimeMillis: ((s?.pauseToSwitchoverMillis ?? 0) + (d?.switchoverApplyMillis ?? 0)).rounded(toPlaces: 3),
            precopyRounds: s?.precopyRounds ?? [], pagesProtectedAtSwitchover: d?.pagesProtectedAtSwitchover ?? 0,
            missingFaults: d?.missingFaults ?? 0, staleFaults: d?.staleFaults ?? 0, unchangedPages: d?.unchangedPages ?? 0,
            sourceExit: status(source), destinationExit: status(destination),
            sourceEnded: source.ending?.description, destinationEnded: destination?.ending?.description,
            interruptedBySignal: interruptedBy, error: error, source: s, destination: d)
    }

    public static func text(_ r: Report) -> String {
        var lines = [
            "demo: \(r.succeeded ? "migration complete" : "migration FAILED")",
            "  backend             \(r.backend?.rawValue ?? "?")",
            "  pages on demand     \(r.demandPages)",
            "  pages in background \(r.backgroundPages)",
            "  fault latency       \(ReportFormatting.micros(r.faultLatencyMicros))",
            "  elapsed             \(String(format: "%.3f", r.elapsedSeconds)) s",
            "  downtime            \(String(format: "%.2f", r.downtimeMillis)) ms",
            "  faults              \(r.missingFaults) missing, \(r.staleFaults) stale; \(r.unchangedPages) stale pages unchanged",
            "  digest match        \(r.digestMatch ? "yes" : "no")",
        ]
        for round in r.precopyRounds {
            lines.append("  pre-copy round \(round.round)    \(round.pagesSent) pages sent, \(round.pagesDirtied) dirtied (\(String(format: "%.3f", round.seconds)) s)")
        }
        if !r.precopyRounds.isEmpty { lines.append("  protected at switch-over \(r.pagesProtectedAtSwitchover) pages") }
        if let ws = r.source?.workingSet {
            lines.append("  working set         \(ws.method), \(ws.estimatedWorkingSetPages) pages, hot set \(ws.hotSetPages) pages"
                + (ws.recall.map { String(format: "; recall %.2f, precision %.2f", $0, ws.precision ?? 0) } ?? ""))
        }
        if let d = r.destination, d.hotSetPages > 0 {
            lines.append("  hot set             \(d.hotSetDemandFaults) of \(d.hotSetPages) pages on demand"
                + (r.source.map { $0.streamHeadPages > 0 ? ", streamed first" : ", address order" } ?? "")
                + (d.hotSetResidentMillis.map { String(format: ", resident %.0f ms after switch-over", $0) } ?? ""))
        }
        if let g = r.destination?.guest {
            lines.append("  guest               \(g.threads) threads, \(g.pattern), \(g.pagesTouched) pages touched, \(g.writes) writes, \(g.mismatches) wrong pages")
        }
        if let e = r.error { lines.append("  error               \(e)") }
        return lines.joined(separator: "\n")
    }
}
