import Foundation
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
        /// Both agents seal their connections (`--encrypt`).
        public var encrypt = false
        public var timeoutSeconds = 300.0
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
        public var sourceExit: Int32?
        public var destinationExit: Int32?
        public var error: String?
        public var source: SourceReport?
        public var destination: DestinationReport?
    }

    public let configuration: Configuration
    public init(configuration: Configuration) { self.configuration = configuration }

    public func run() throws(AgentError) -> Report {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-demo-\(getpid())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let sourceReport = directory.appendingPathComponent("source.json").path
        let destinationReport = directory.appendingPathComponent("destination.json").path
        let key = directory.appendingPathComponent("psk").path
        try PresharedKey.generate(path: key)  // a key per run: the demo never runs insecure
        let arena = "\(configuration.arenaSize)"
        let source = try AgentProcess(executable: configuration.executable, arguments: [
            "source", "--listen", "127.0.0.1:0", "--arena", arena, "--guest-threads", "2",
            "--dirty-rate", "\(configuration.dirtyRate)", "--report-json", sourceReport,
            "--precopy-rounds", "\(configuration.precopyRounds)", "--psk-file", key,
        ] + (configuration.encrypt ? ["--encrypt"] : []))
        guard let address = source.awaitLine(prefix: "listening on ", seconds: 60) else {
            source.terminate()
            throw .system("the source process did not start listening (exit \(source.wait(seconds: 5).map(String.init) ?? "?"))")
        }
        var arguments = [
            "destination", "--connect", address, "--arena", arena,
            "--guest-threads", "\(configuration.guestThreads)", "--pattern", configuration.pattern.rawValue,
            "--write-ratio", "\(configuration.writeRatio)", "--report-json", destinationReport, "--psk-file", key,
        ]
        if let protection = configuration.protection { arguments += ["--protection", protection.rawValue] }
        if configuration.encrypt { arguments.append("--encrypt") }
        let destination = try AgentProcess(executable: configuration.executable, arguments: arguments)
        let destinationExit = destination.wait(seconds: configuration.timeoutSeconds)
        if destinationExit != 0 { source.terminate(signal: SIGTERM) }
        let sourceExit = source.wait(seconds: destinationExit == nil ? 5 : 30)
        let s = ReportFormatting.read(SourceReport.self, fromFile: sourceReport)
        let d = ReportFormatting.read(DestinationReport.self, fromFile: destinationReport)
        var error: String?
        if destinationExit == nil { error = "the destination did not finish within \(configuration.timeoutSeconds) s" }
        else if let e = d?.error { error = e }
        else if destinationExit != 0 { error = "the destination exited with status \(destinationExit!)" }
        else if sourceExit != 0 { error = s?.error ?? "the source exited with status \(sourceExit.map(String.init) ?? "killed")" }
        return Report(
            succeeded: error == nil && d?.digestMatch == true,
            backend: d?.backend, digestMatch: d?.digestMatch ?? false,
            demandPages: d?.demandPages ?? 0, backgroundPages: d?.backgroundPages ?? 0,
            faultLatencyMicros: d?.faultLatencyMicros, elapsedSeconds: d?.elapsedSeconds ?? 0,
            downtimeMillis: ((s?.pauseToSwitchoverMillis ?? 0) + (d?.switchoverApplyMillis ?? 0)).rounded(toPlaces: 3),
            precopyRounds: s?.precopyRounds ?? [], pagesProtectedAtSwitchover: d?.pagesProtectedAtSwitchover ?? 0,
            missingFaults: d?.missingFaults ?? 0, staleFaults: d?.staleFaults ?? 0, unchangedPages: d?.unchangedPages ?? 0,
            sourceExit: sourceExit, destinationExit: destinationExit, error: error, source: s, destination: d)
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
        if let g = r.destination?.guest {
            lines.append("  guest               \(g.threads) threads, \(g.pattern), \(g.pagesTouched) pages touched, \(g.writes) writes, \(g.mismatches) wrong pages")
        }
        if let e = r.error { lines.append("  error               \(e)") }
        return lines.joined(separator: "\n")
    }
}
