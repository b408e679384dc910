import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import MigrateDemo

/// One handler-mode migration as the benchmark runs it: a source serving a
/// memory image, a destination waiting on a Unix socket as a VMM's page-fault
/// handler (`--uffd-socket`), and the stand-in VMM, which hands over its
/// userfaultfd and checks every page it reads against the image. Starts the
/// source, waits for `listening on`, starts the destination, waits (bounded)
/// until its socket exists, starts the stand-in; waits for all three with
/// deadlines; and refuses any run whose integrity is in doubt (a non-zero
/// exit, a digest mismatch) with an error that names the run and shows the
/// tail of each log. Threading: the controlling thread only.
struct HandlerModePair {
    struct Outcome {
        var destination: DestinationReport
        var source: SourceReport
        /// The stand-in VMM from its start until it exited.
        var vmmSeconds: Double
        var load: OtherLoad
    }

    let executable: String
    let standInVMM: String
    /// Files of this run go here, named after `label`.
    let directory: String
    let label: String
    let image: String
    let timeoutSeconds: Double

    /// How long the destination may take to create its socket.
    static let socketSeconds = 30.0

    /// `vmmOptions`: the stand-in's `--threads` and the like.
    func run(sourceOptions: [String], destinationOptions: [String], vmmOptions: [String]) throws(AgentError) -> Outcome {
        let base = "\(directory)/\(label)"
        let files = (source: "\(base).source.json", destination: "\(base).destination.json")
        let key = "\(base).key"
        let socket = Self.socketPath(base: base, label: label)
        for path in [files.source, files.destination, key, socket] { try? FileManager.default.removeItem(atPath: path) }
        try PresharedKey.generate(path: key)  // a key per run, as in production
        defer {
            try? FileManager.default.removeItem(atPath: key)
            try? FileManager.default.removeItem(atPath: socket)
        }
        let before = CPUUsage.snapshot()
        let (source, address) = try RunAgents.startSource(
            (executable, ["source", "--listen", "127.0.0.1:0", "--memory-file", image, "--report-json", files.source,
                          "--psk-file", key] + sourceOptions), label: label, log: "\(base).source.log")
        defer { source.stop(signal: SIGKILL) }  // reaps it; nothing to do once it has exited
        // Either child's exit wakes the wait below: a VMM that fails first must not leave us waiting on its handler.
        let exited = DispatchSemaphore(value: 0)
        let destination = try AgentProcess(executable: executable,
                                           arguments: ["destination", "--connect", address, "--uffd-socket", socket,
                                                       "--report-json", files.destination, "--psk-file", key,
                                                       "--vmm-timeout", "\(timeoutSeconds)"] + destinationOptions,
                                           stderrPath: "\(base).destination.log", onExit: { exited.signal() })
        defer { destination.stop(signal: SIGKILL) }
        func logs(_ vmm: AgentProcess?) -> String {
            "\(source.stderrTail(name: "source"))\n\(destination.stderrTail(name: "destination"))"
                + (vmm.map { "\n\($0.stderrTail(name: "stand-in-vmm"))" } ?? "") + "\n    files: \(base).*"
        }
        guard Self.awaitSocket(socket, of: destination, seconds: min(Self.socketSeconds, timeoutSeconds)) else {
            throw .migrationFailed("\(label): the destination's socket \(socket) did not appear within "
                + "\(min(Self.socketSeconds, timeoutSeconds)) s (destination \(destination.exitDescription))\n\(logs(nil))")
        }
        let vmmStart = DispatchTime.now().uptimeNanoseconds
        let vmm = try AgentProcess(executable: standInVMM,
                                   arguments: ["--socket", socket, "--image", image, "--deadline", "\(timeoutSeconds)"] + vmmOptions,
                                   stderrPath: "\(base).vmm.log", onExit: { exited.signal() })
        defer { vmm.stop(signal: SIGKILL) }

        let deadline = DispatchTime.now() + timeoutSeconds
        var vmmFailedFirst = false
        while !destination.hasExited {
            if let ending = vmm.ending, !ending.succeeded {
                vmmFailedFirst = true
                break
            }
            if exited.wait(timeout: deadline) == .timedOut { break }
        }
        if vmmFailedFirst { destination.stop() }
        let destinationExit = destination.wait(seconds: 0)  // reaped, or killed past the deadline
        if destinationExit == nil { vmm.stop(signal: SIGKILL) }  // its next fault would wait for ever
        if destinationExit != 0 { source.stop() }
        // Once the handler is done the VMM has read everything, or lingers only until the handler hangs up.
        let vmmExit = vmm.wait(seconds: destinationExit == 0 ? 30 : 5)
        let sourceExit = source.wait(seconds: destinationExit == nil ? 5 : 30)
        let load = CPUUsage.snapshot().since(before)

        func failure(_ reason: String) -> AgentError { .migrationFailed("\(label): \(reason)\n\(logs(vmm))") }
        let vmmFailure = "the stand-in VMM \(vmm.exitDescription) (1: a page it read differs from the image; 2: its setup "
            + "failed; 3: its deadline passed)"
        if vmmFailedFirst { throw failure(vmmFailure + "; the destination was stopped") }
        let (d, s) = try RunAgents.reports(
            destination: destination, exit: destinationExit, report: ReportFormatting.read(DestinationReport.self, fromFile: files.destination),
            source: source, exit: sourceExit, report: ReportFormatting.read(SourceReport.self, fromFile: files.source),
            timeoutSeconds: timeoutSeconds, failure: failure)
        guard let vmmExit else { throw failure("the stand-in VMM did not exit after the destination finished (killed)") }
        guard vmmExit == 0 else { throw failure(vmmFailure) }
        guard d.digestMatch, s.destinationDigestMatch else {
            throw failure("image digest mismatch (source \(d.sourceDigest ?? "?"), destination \(d.destinationDigest ?? "?"))")
        }
        guard let vmmEnd = vmm.exitedAtNanos else { throw failure("the stand-in VMM's exit was not recorded") }
        return Outcome(destination: d, source: s, vmmSeconds: (Double(vmmEnd - vmmStart) / 1e9).rounded(toPlaces: 3), load: load)
    }

    /// Polls (every 5 ms) until `path` exists; false at the deadline or when the destination has exited first.
    static func awaitSocket(_ path: String, of destination: AgentProcess, seconds: Double) -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < deadline {
            if access(path, F_OK) == 0 { return true }
            if destination.hasExited { return false }
            usleep(5_000)
        }
        return access(path, F_OK) == 0
    }

    /// The socket beside the run's files, or in the temporary directory when that path is too long
    /// for a Unix socket (108 bytes with its terminating zero).
    static func socketPath(base: String, label: String) -> String {
        let beside = "\(base).sock"
        return beside.utf8.count < 100 ? beside
            : FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-bench-\(getpid())-\(label).sock").path
    }
}
