import Dispatch
import FoundationEssentials
import Glibc
import Histogram
import MigrateAgent
import MigrateDemo

/// One migration between a real source process and a real destination
/// process on 127.0.0.1 (or, with `link`, each in a network namespace of its
/// own, started with `ip netns exec`, across the shaped veth pair), as the benchmark runs it: start the source, wait for
/// `listening on`, start the destination, wait for both with deadlines, read
/// their reports and the guest's latency histogram, and refuse any run whose
/// integrity is in doubt (non-zero exit, wrong page, digest mismatch,
/// unverified arena) with an error that names the run and shows its logs.
/// Threading: the controlling thread only.
struct AgentPair {
    struct Outcome {
        var destination: DestinationReport
        var source: SourceReport
        var histogram: Histogram<UInt64>
        var integrity: RunIntegrity
        var load: OtherLoad

        /// CPU-seconds both agents used during the migration, when both measured it.
        var agentCPUSeconds: Double? {
            guard let d = destination.cpuDuringMigration, let s = source.cpuDuringMigration else { return nil }
            return (d.totalSeconds + s.totalSeconds).rounded(toPlaces: 3)
        }
    }

    let executable: String
    /// Files of this run go here, named after `label`.
    let directory: String
    let label: String
    let arenaBytes: Int
    let timeoutSeconds: Double
    var link: LinkHosts? = nil

    /// The command that starts an agent: the binary, or `ip netns exec NS` it.
    private func command(_ arguments: [String], in namespace: String?) -> (String, [String]) {
        guard let namespace, let ip = LinkHosts.ip else { return (executable, arguments) }
        return (ip, ["netns", "exec", namespace, executable] + arguments)
    }

    func run(sourceOptions: [String], destinationOptions: [String]) throws(AgentError) -> Outcome {
        let base = "\(directory)/\(label)"
        let files = (source: "\(base).source.json", destination: "\(base).destination.json", histogram: "\(base).latency.json")
        let key = "\(base).key"
        for path in [files.source, files.destination, files.histogram, key] { try? FileManager.default.removeItem(atPath: path) }
        try PresharedKey.generate(path: key)  // a key per run, as in production
        defer { try? FileManager.default.removeItem(atPath: key) }
        let before = CPUUsage.snapshot()
        let sourceCommand = command(["source", "--listen", "\(link?.sourceAddress ?? "127.0.0.1"):0", "--arena", "\(arenaBytes)",
                                     "--report-json", files.source, "--psk-file", key] + sourceOptions, in: link?.source)
        let (source, address) = try RunAgents.startSource(sourceCommand, label: label, log: "\(base).source.log")
        let destination: AgentProcess
        do {
            let destinationCommand = command(["destination", "--connect", address, "--arena", "\(arenaBytes)",
                                              "--report-json", files.destination, "--latency-histogram", files.histogram,
                                              "--psk-file", key] + destinationOptions, in: link?.destination)
            destination = try AgentProcess(executable: destinationCommand.0, arguments: destinationCommand.1,
                                           stderrPath: "\(base).destination.log")
        } catch {
            source.stop(signal: SIGKILL)
            throw error
        }
        let destinationExit = destination.wait(seconds: timeoutSeconds)
        if destinationExit != 0 { source.stop() }
        let sourceExit = source.wait(seconds: destinationExit == nil ? 5 : 30)
        let load = CPUUsage.snapshot().since(before)

        func failure(_ reason: String) -> AgentError {
            .migrationFailed("\(label): \(reason)\n\(source.stderrTail(name: "source"))\n"
                + "\(destination.stderrTail(name: "destination"))\n    files: \(base).*")
        }
        let (d, s) = try RunAgents.reports(
            destination: destination, exit: destinationExit, report: ReportFormatting.read(DestinationReport.self, fromFile: files.destination),
            source: source, exit: sourceExit, report: ReportFormatting.read(SourceReport.self, fromFile: files.source),
            timeoutSeconds: timeoutSeconds, failure: failure)
        let integrity = RunIntegrity(digestMatch: d.digestMatch, arenaVerified: d.arenaVerified,
                                     guestMismatches: d.guest?.mismatches ?? 0, sourceSawDigestMatch: s.destinationDigestMatch)
        guard integrity.guestMismatches == 0 else {
            throw failure("the guest read \(integrity.guestMismatches) wrong pages; first: \(d.guest?.firstMismatch ?? "?")")
        }
        guard integrity.digestMatch, integrity.sourceSawDigestMatch else {
            throw failure("arena digest mismatch (source \(d.sourceDigest ?? "?"), destination \(d.destinationDigest ?? "?"))")
        }
        guard integrity.arenaVerified else { throw failure("the destination did not verify the whole arena") }
        guard d.guest?.finished ?? false else { throw failure("the guest did not finish") }
        guard let histogram = ReportFormatting.read(Histogram<UInt64>.self, fromFile: files.histogram) else {
            throw failure("the destination wrote no readable latency histogram")
        }
        return Outcome(destination: d, source: s, histogram: histogram, integrity: integrity, load: load)
    }
}
