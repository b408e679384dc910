import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent

/// Handler-mode figures (`bench --handler-mode SIZE`): the production path, where
/// the destination is the page-fault handler of a separate VMM process
/// (`destination --uffd-socket`) and the VMM is `stand-in-vmm`, serving an image
/// of SIZE. Loop-side latency is the destination's, from reading a fault to its
/// resolution: the stand-in's guest times nothing. Value types; built on the
/// benchmark's controlling thread.
public struct HandlerModeResult: Codable, Sendable {
    /// The image the source served (pseudo-random pages, every eighth all zero).
    public var imageBytes: Int
    /// Why nothing was measured (no stand-in VMM beside the binary), or nil.
    public var skipped: String?
    public var scenarios: [HandlerModeScenarioResult] = []

    public func scenario(_ kind: HandlerModeScenario) -> HandlerModeScenarioResult? { scenarios.first { $0.scenario == kind } }
}

/// The three handler-mode runs, one VMM guest thread reading every page in random order or none.
public enum HandlerModeScenario: String, Codable, Sendable, CaseIterable {
    /// `source --no-background`: every page the VMM's guest reads is a demand fault.
    case oneThreadNoBackground = "handler-1t-nobg"
    /// The background stream on while the guest reads.
    case oneThreadBackground = "handler-1t-bg"
    /// No guest (`--threads 0`, lingering until the handler is done): the stream moves every page.
    case idle = "handler-idle"

    public var vmmThreads: Int { self == .idle ? 0 : 1 }
    public var background: Bool { self != .oneThreadNoBackground }
}

/// One handler-mode migration.
public struct HandlerModeRun: Codable, Sendable {
    public var repetition: Int
    /// The destination's demand faults, fault read until resolved (`phases.total`); nil when none was measured.
    public var loopSide: LatencySummary?
    /// Destination: connect until every page present.
    public var elapsedSeconds: Double
    public var demandPages: Int
    public var backgroundPages: Int
    /// Pages the source sent as all-zero frames.
    public var zeroPagesReceived: Int
    /// The stand-in VMM from its start until it exited (with no guest, it stays until the handler hangs up).
    public var vmmSeconds: Double
    public var digestMatch: Bool
    public var load: OtherLoad
}

/// One handler-mode scenario over its runs. The destination reports its loop-side latency as a
/// summary, not a histogram: p50 and p99 are the median of the runs' own, not a merged distribution.
public struct HandlerModeScenarioResult: Codable, Sendable {
    public var scenario: HandlerModeScenario
    public var runs: [HandlerModeRun]
    /// Median over runs of each run's loop-side p50 and p99, µs; nil when no run measured a demand fault.
    public var loopSideP50: Double?
    public var loopSideP99: Double?
    /// Median over runs of the destination's whole-migration time, and the image over it in MB/s.
    public var migrationSeconds: Double
    public var megabytesPerSecond: Double
    public var demandPages: Int
    public var vmmSeconds: Double
    /// Other processes were busy during at least one run.
    public var busy: Bool

    public var name: String { scenario.rawValue }
}

extension HandlerModeScenarioResult {
    init(scenario: HandlerModeScenario, imageBytes: Int, runs: [HandlerModeRun]) {
        let measured = runs.compactMap(\.loopSide).filter { $0.count > 0 }
        let seconds = WorkingSetTargets.median(runs.map(\.elapsedSeconds)) ?? 0
        self.init(scenario: scenario, runs: runs, loopSideP50: WorkingSetTargets.median(measured.map(\.p50)),
                  loopSideP99: WorkingSetTargets.median(measured.map(\.p99)), migrationSeconds: seconds,
                  megabytesPerSecond: seconds > 0 ? (Double(imageBytes) / seconds / 1e6).rounded() : 0,
                  demandPages: WorkingSetTargets.median(runs.map(\.demandPages)) ?? 0,
                  vmmSeconds: WorkingSetTargets.median(runs.map(\.vmmSeconds)) ?? 0, busy: runs.contains { $0.load.isBusy })
    }
}

extension BenchRunner {
    /// The stand-in VMM built beside `executable` (a product of this package).
    static func standInVMM(beside executable: String) -> String {
        guard let slash = executable.lastIndex(of: "/") else { return "stand-in-vmm" }
        return executable[...slash] + "stand-in-vmm"
    }

    /// The handler-mode set: an image of `size` written once, then the scenarios round-robin for
    /// `repetitions`. Without the stand-in VMM beside the binary, skipped with the reason (not a failure).
    func measureHandlerMode(size: Int) throws(AgentError) -> HandlerModeResult {
        var result = HandlerModeResult(imageBytes: size)
        let vmm = Self.standInVMM(beside: configuration.executable)
        guard access(vmm, X_OK) == 0 else {
            result.skipped = "no stand-in VMM at \(vmm): build the package's stand-in-vmm product beside migrate-agent"
            configuration.progress("bench: handler mode skipped: \(result.skipped!)")
            return result
        }
        configuration.progress("bench: handler mode: \(ByteSize(bytes: size)) image served to the stand-in VMM's handler "
            + "(destination --uffd-socket), " + HandlerModeScenario.allCases.map(\.rawValue).joined(separator: ", "))
        let image = "\(workDirectory)/handler-mode.img"
        try MemoryImage.write(path: image, bytes: size)
        defer { try? FileManager.default.removeItem(atPath: image) }
        var runs = [[HandlerModeRun]](repeating: [], count: HandlerModeScenario.allCases.count)
        for repetition in 1...max(1, configuration.repetitions) {
            for (i, scenario) in HandlerModeScenario.allCases.enumerated() {
                let pair = HandlerModePair(executable: configuration.executable, standInVMM: vmm, directory: workDirectory,
                                           label: "\(scenario.rawValue).\(repetition)", image: image,
                                           timeoutSeconds: configuration.runTimeoutSeconds)
                var vmmOptions = ["--threads", "\(scenario.vmmThreads)"]
                // With no guest the VMM stays, as a running VM does, until the handler is done and hangs up.
                if scenario.vmmThreads == 0 { vmmOptions += ["--linger", "\(configuration.runTimeoutSeconds)"] }
                let outcome = try pair.run(sourceOptions: [scenario.background ? "--background" : "--no-background"] + agentOptions,
                                           destinationOptions: destinationAgentOptions, vmmOptions: vmmOptions)
                let d = outcome.destination
                let run = HandlerModeRun(repetition: repetition, loopSide: d.phases.map(\.total).flatMap { $0.count > 0 ? $0 : nil }, elapsedSeconds: d.elapsedSeconds,
                                         demandPages: d.demandPages, backgroundPages: d.backgroundPages,
                                         zeroPagesReceived: d.zeroPagesReceived, vmmSeconds: outcome.vmmSeconds,
                                         digestMatch: d.digestMatch, load: outcome.load)
                runs[i].append(run)
                configuration.progress("bench: \(scenario.rawValue) run \(repetition)/\(configuration.repetitions): "
                    + Self.describe(run))
            }
        }
        result.scenarios = HandlerModeScenario.allCases.enumerated().map { i, scenario in
            HandlerModeScenarioResult(scenario: scenario, imageBytes: size, runs: runs[i])
        }
        return result
    }

    /// One progress line.
    static func describe(_ run: HandlerModeRun) -> String {
        var parts = ["\(run.demandPages) demand pages"]
        if let l = run.loopSide, l.count > 0 {
            parts.append(String(format: "loop-side p50 %.1f µs, p99 %.1f µs", l.p50, l.p99))
        }
        parts.append(String(format: "migrated in %.3f s, VMM %.3f s", run.elapsedSeconds, run.vmmSeconds))
        if run.load.isBusy { parts.append(String(format: "busy: other processes %.2f cores", run.load.otherCores)) }
        return parts.joined(separator: ", ")
    }
}
