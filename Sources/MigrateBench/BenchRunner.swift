import Dispatch
import FoundationEssentials
import Glibc
import Histogram
import MigrateAgent
import MigrateDemo

/// `migrate-agent bench`: measures, in turn and in one run, the baselines
/// (kernel first touch, raw userfaultfd resolution, loopback round trip and
/// bandwidth), the agent scenarios (real source and destination processes),
/// the floor again, and idle-guest whole migrations; then judges the targets.
/// A failed integrity check anywhere ends the run with `succeeded == false`.
/// Threading: `run` on one controlling thread; measurement threads and child
/// processes are created and joined inside each step.
public final class BenchRunner {
    public let configuration: BenchConfiguration
    /// Latency distributions (nanoseconds) by CSV name, after `run`.
    public internal(set) var distributions: [(name: String, histogram: Histogram<UInt64>)] = []
    private(set) var workDirectory = ""
    private var keepWorkDirectory = false

    public init(configuration: BenchConfiguration) { self.configuration = configuration }

    /// Runs everything; never throws: a failure is `report.error`, with `succeeded == false`.
    public func run() -> BenchReport {
        let start = EventLoop.nowNanos()
        let usage = CPUUsage.snapshot()
        var report = BenchReport(
            machine: MachineInfo.current(),
            settings: BenchSettings(arenaBytes: configuration.arenaSize, repetitions: configuration.repetitions,
                                    writeRatio: configuration.writeRatio, scenarios: [],
                                    migrationSizes: configuration.migrationSizes, baselineSamples: configuration.baselineSamples,
                                    bandwidthBytes: configuration.bandwidthBytes, busyPollMicros: configuration.busyPollMicros,
                                    encrypt: configuration.encrypt, loopSliceMicros: configuration.loopSliceMicros,
                                    yieldToDemand: configuration.yieldToDemand,
                                    installThread: configuration.installThread?.rawValue,
                                    links: configuration.links.map(\.name),
                                    commandLine: configuration.commandLine),
            backend: .missing)
        do {
            try measure(into: &report)
            report.succeeded = true
        } catch {
            report.error = error.description
            keepWorkDirectory = true
        }
        report.machine.loadAfter = MachineInfo.loadAverage()
        report.load = CPUUsage.snapshot().since(usage)
        report.targets = BenchTargets.judge(report)
        report.warnings += BenchWarnings.of(report)
        report.elapsedSeconds = (Double(EventLoop.nowNanos() - start) / 1e9).rounded(toPlaces: 1)
        if !workDirectory.isEmpty {
            if keepWorkDirectory || configuration.workDirectory != nil {
                report.notes.append("per-run reports and logs kept in \(workDirectory)")
            } else {
                try? FileManager.default.removeItem(atPath: workDirectory)
            }
        }
        return report
    }

    private func measure(into report: inout BenchReport) throws(AgentError) {
        let probe: KernelProbe
        do { probe = try KernelProbe.run() } catch { throw .unsupported(error.description) }
        report.backend = probe.backend
        let staleAvailable = Self.sourceCanPrecopy(configuration.executable)
        let (scenarios, skipped) = try resolveScenarios(probe: probe, staleAvailable: staleAvailable)
        report.settings.scenarios = scenarios.map(\.name)
        report.skipped = skipped
        if !staleAvailable {
            report.notes.append("stale-page scenarios skipped: they need hybrid pre-copy (`source --precopy-rounds`), "
                + "which this build of migrate-agent does not have yet")
            configuration.progress("bench: \(report.notes.last!)")
        }
        try makeWorkDirectory()
        // The working-set figures (and handler mode's, which run in any case) compare runs of their own set with
        // each other: alone, they need no baseline.
        guard Self.needsBaselines(scenarios: scenarios, configuration: configuration) else {
            let figures = configuration.handlerModeBytes == nil ? "working-set" : "working-set and handler-mode"
            report.notes.append("baselines not measured: only the \(figures) figures were asked for, and they compare "
                + "runs of their own set with each other")
            configuration.progress("bench: \(report.notes.last!)")
            report.settings.migrationSizes = []
            report.workingSet = try measureWorkingSet(size: configuration.workingSetBytes!, probe: probe)
            try measureHandlerMode(into: &report)
            return
        }
        let cores = report.machine.cores
        let loopback = try LoopbackBaselines(executable: configuration.executable, logDirectory: workDirectory, cores: cores)
        defer { loopback.close() }

        report.baselines = try measureBaselines(loopback: loopback, cores: cores)
        let floor = report.baselines!.floor!
        configuration.progress("bench: floor (uffd MISSING + loopback RTT, \(floor.placement.rawValue)) "
            + String(format: "p50 %.1f µs, p99 %.1f µs", floor.p50, floor.p99))

        report.scenarios = try runScenarios(scenarios, floor: floor)

        if !scenarios.isEmpty {
            configuration.progress("bench: measuring the floor again")
            let samples = max(500, configuration.baselineSamples / 4)
            let uffd = try UffdResolutionBaseline.measure(.missingCopy, pages: samples, placement: .unpinned, seed: 3)
            let rtt = try loopback.roundTrips(samples: samples, placement: .unpinned)
            report.floorAtEnd = FaultFloor(placement: .unpinned, uffd: uffd.baseline.latency, rtt: rtt.baseline.latency)
        }

        // Sized scenarios (issue 9's busy guests) are compared with an idle migration of their size.
        var sizes = configuration.migrationSizes
        let added = Set(scenarios.compactMap(\.arenaBytes)).subtracting(sizes).sorted()
        if !added.isEmpty {
            sizes = (sizes + added).sorted()
            report.notes.append("idle migrations of " + added.map { ByteSize(bytes: $0).description }.joined(separator: ", ")
                + " added: the busy-guest scenarios of that size are compared with them")
            configuration.progress("bench: \(report.notes.last!)")
        }
        report.settings.migrationSizes = sizes
        for size in sizes {
            configuration.progress("bench: baseline: local install of \(ByteSize(bytes: size)) (UFFDIO_COPY of 256 KiB runs "
                + "into a fresh memfd registered as the destination's, no network), three passes")
            let install = try LocalInstallBaseline.measure(bytes: size, backend: probe.backend)
            configuration.progress("bench: local install of \(ByteSize(bytes: size)): "
                + install.passes.enumerated().map { i, p in
                    "pass \(i + 1)\(p.heldBytes > 0 ? " (source-sized memfd held)" : "")"
                        + String(format: " %.0f MB/s (%.2f µs/page; by quarter ", p.megabytesPerSecond, p.microsPerPage)
                        + p.segmentMicrosPerPage.map { String(format: "%.2f", $0) }.joined(separator: ", ") + ")"
                }.joined(separator: ", ") + String(format: "; page hash %.2f µs/page", install.hashMicrosPerPage))
            report.migrations.append(try runMigration(size: size, backend: probe.backend,
                                                      bandwidth: report.baselines!.bandwidth.best, install: install))
        }

        try measureHandlerMode(into: &report)

        if let size = configuration.workingSetBytes {
            report.workingSet = try measureWorkingSet(size: size, probe: probe)
        }

        if !configuration.links.isEmpty {
            report.links = try measureLinks(backend: probe.backend, baselines: report.baselines!)
        }
    }

    /// Whether anything asked for needs the baselines: every figure but the working set's does,
    /// and a run that asks for nothing at all measures them alone (handler mode runs in either case).
    static func needsBaselines(scenarios: [BenchScenario], configuration: BenchConfiguration) -> Bool {
        !scenarios.isEmpty || !configuration.migrationSizes.isEmpty || !configuration.links.isEmpty
            || configuration.workingSetBytes == nil
    }

    /// Handler mode, when asked for; a skip (no stand-in VMM) is noted, not a failure.
    private func measureHandlerMode(into report: inout BenchReport) throws(AgentError) {
        guard let size = configuration.handlerModeBytes else { return }
        let result = try measureHandlerMode(size: size)
        if let skipped = result.skipped { report.notes.append("handler mode not measured: \(skipped)") }
        report.handlerMode = result
    }

    // MARK: Scenarios

    private func resolveScenarios(probe: KernelProbe, staleAvailable: Bool) throws(AgentError) -> ([BenchScenario], [SkippedScenario]) {
        var wanted: [BenchScenario] = []
        for name in configuration.scenarios {
            switch name {
            case "default": wanted += BenchScenario.defaults(backend: probe.backend, staleAvailable: true)
            case "all": wanted += BenchScenario.all(backends: probe.availableBackends, staleAvailable: true)
            case "none": break
            default: wanted.append(try BenchScenario(parsing: name, defaultBackend: probe.backend))
            }
        }
        var seen = Set<BenchScenario>()
        var run: [BenchScenario] = []
        var skipped: [SkippedScenario] = []
        for scenario in wanted where seen.insert(scenario).inserted {
            if !probe.isAvailable(scenario.backend) {
                skipped.append(SkippedScenario(name: scenario.name, reason: "the kernel lacks the \(scenario.backend.rawValue) backend"))
            } else if scenario.pages != .absent && !staleAvailable {
                skipped.append(SkippedScenario(name: scenario.name, reason: "needs hybrid pre-copy (source --precopy-rounds)"))
            } else {
                run.append(scenario)
            }
        }
        return (run, skipped)
    }

    /// Repetitions go round-robin over the scenarios, so a change in the
    /// machine's load spreads over all of them instead of biasing one.
    func runScenarios(_ scenarios: [BenchScenario], floor: FaultFloor,
                              link: LinkHosts? = nil) throws(AgentError) -> [ScenarioResult] {
        var runs = [[ScenarioRun]](repeating: [], count: scenarios.count)
        var histograms = [Histogram<UInt64>](repeating: LatencySummary.makeCompactHistogram(), count: scenarios.count)
        let prefix = link.map { "link-\($0.rate.name)-" } ?? ""
        for repetition in 1...max(1, configuration.repetitions) {
            for (i, scenario) in scenarios.enumerated() {
                var pair = AgentPair(executable: configuration.executable, directory: workDirectory,
                                     label: "\(prefix)\(scenario.name).\(repetition)",
                                     arenaBytes: scenario.arenaBytes ?? configuration.arenaSize,
                                     timeoutSeconds: configuration.runTimeoutSeconds)
                pair.link = link
                let outcome = try pair.run(sourceOptions: sourceOptions(scenario) + pacing(on: link),
                                           destinationOptions: destinationOptions(scenario))
                let run = ScenarioRun(outcome)
                runs[i].append(run)
                histograms[i].add(outcome.histogram)
                let busy = run.load.isBusy ? String(format: " (busy: other processes %.2f cores)", run.load.otherCores) : ""
                configuration.progress("bench: \(prefix)\(scenario.name) run \(repetition)/\(configuration.repetitions): "
                    + String(format: "%llu faults, p50 %.1f µs, p99 %.1f µs, touched in %.2f s, migrated in %.2f s", run.latency.count,
                             run.latency.p50, run.latency.p99, run.touchSeconds, run.elapsedSeconds)
                    + (run.downtimeMillis.map { String(format: ", downtime %.1f ms", $0) } ?? "")
                    + (run.destinationMemory.map { m in
                        String(format: ", destination PSS %.1f MiB", Double(m.pssBytes) / 1048576)
                      } ?? "") + busy)
            }
        }
        var results: [ScenarioResult] = []
        for (i, scenario) in scenarios.enumerated() {
            distributions.append((prefix + scenario.name, histograms[i]))
            results.append(ScenarioResult(scenario: scenario, arenaBytes: scenario.arenaBytes ?? configuration.arenaSize, runs: runs[i],
                                          merged: histograms[i], floor: floor))
        }
        return results
    }

    private func sourceOptions(_ scenario: BenchScenario) -> [String] {
        var options = ["--guest-threads", "2", scenario.background ? "--background" : "--no-background"] + agentOptions
        switch scenario.pages {
        case .absent: options += ["--dirty-rate", "0"]
        case .stale: options += ["--precopy-rounds", "1", "--dirty-rate", "20000"]
        case .hybrid: options += ["--precopy-rounds", "\(Self.hybridPrecopyRounds)", "--dirty-rate", "20000"]
        }
        return options
    }

    private func destinationOptions(_ scenario: BenchScenario) -> [String] {
        ["--protection", scenario.backend.rawValue, "--guest-threads", "\(scenario.threads)",
         "--pattern", scenario.pattern.rawValue, "--write-ratio", "\(configuration.writeRatio)"] + destinationAgentOptions
    }

    /// Options given to the destination of every run: `agentOptions` and the destination's own.
    var destinationAgentOptions: [String] {
        agentOptions + (configuration.yieldToDemand.map { [$0 ? "--yield-to-demand" : "--no-yield-to-demand"] } ?? [])
            + (configuration.installThread.map { ["--install-thread", $0.rawValue] } ?? [])
    }

    /// Options given to both agents of every run.
    var agentOptions: [String] {
        (configuration.busyPollMicros.map { ["--busy-poll", "\($0)"] } ?? []) + (configuration.encrypt ? ["--encrypt"] : [])
            + (configuration.loopSliceMicros.map { ["--loop-slice", "\($0)"] } ?? [])
    }

    /// The source's `--max-bandwidth` on a link, when the stream is paced (`linkPacingPercent`).
    func pacing(on link: LinkHosts?) -> [String] {
        guard let link, let percent = configuration.linkPacingPercent else { return [] }
        return ["--max-bandwidth", "\(UInt64(link.rate.bytesPerSecond) * UInt64(percent) / 100)"]
    }

    /// Pre-copy rounds of the hybrid scenarios, as `demo --precopy-rounds 3` in issue 9.
    static let hybridPrecopyRounds = 3

    // MARK: Whole migrations

    func runMigration(size: Int, backend: BackendKind, bandwidth: Double,
                              install: LocalInstallRate?, link: LinkHosts? = nil) throws(AgentError) -> MigrationResult {
        var seconds: [Double] = []
        var integrity: [RunIntegrity] = []
        var load: [OtherLoad] = []
        var reported: [Int] = []
        var memory: [ProcessMemory] = []
        var preallocate: [Double] = []
        var cpu: [Double] = []
        let prefix = link.map { "link-\($0.rate.name)-" } ?? ""
        for repetition in 1...max(1, configuration.repetitions) {
            let reportedBefore = MachineInfo.reportedFreeKiB()
            let label = "\(prefix)idle-\(BenchScenario.sizeName(size)).\(repetition)"
            var pair = AgentPair(executable: configuration.executable, directory: workDirectory, label: label,
                                 arenaBytes: size, timeoutSeconds: configuration.runTimeoutSeconds)
            pair.link = link
            let outcome = try pair.run(sourceOptions: ["--guest-threads", "2", "--dirty-rate", "0", "--background"] + agentOptions
                                           + pacing(on: link),
                                       destinationOptions: ["--protection", backend.rawValue, "--guest-threads", "0"] + destinationAgentOptions)
            if let before = reportedBefore, let after = MachineInfo.reportedFreeKiB() { reported.append(after - before) }
            seconds.append(outcome.destination.elapsedSeconds)
            integrity.append(outcome.integrity)
            load.append(outcome.load)
            if let m = outcome.destination.memory { memory.append(m) }
            if let millis = outcome.destination.preallocateMillis { preallocate.append(millis) }
            if let seconds = outcome.agentCPUSeconds { cpu.append(seconds) }
            configuration.progress("bench: \(link.map { "link \($0.rate.name): " } ?? "")idle migration of \(ByteSize(bytes: size)) "
                + "run \(repetition)/\(configuration.repetitions): "
                + String(format: "%.3f s, %.0f MB/s", outcome.destination.elapsedSeconds,
                         Double(size) / 1e6 / outcome.destination.elapsedSeconds)
                + (outcome.destination.memory.map { String(format: ", destination PSS %.1f MiB", Double($0.pssBytes) / 1048576) } ?? ""))
        }
        let median = seconds.sorted()[seconds.count / 2]
        let rate = Double(size) / median
        return MigrationResult(arenaBytes: size, runSeconds: seconds, seconds: median,
                               megabytesPerSecond: (rate / 1e6).rounded(toPlaces: 1),
                               fractionOfLoopback: bandwidth > 0 ? (rate / bandwidth).rounded(toPlaces: 3) : nil,
                               localInstall: install,
                               fractionOfLocalInstall: install.flatMap { $0.bestMegabytesPerSecond > 0
                                   ? (rate / 1e6 / $0.bestMegabytesPerSecond).rounded(toPlaces: 3) : nil },
                               reportedFreeKiB: reported.count == seconds.count ? reported : nil,
                               integrity: integrity, load: load, busy: load.contains { $0.isBusy },
                               destinationMemory: memory.count == seconds.count ? memory : nil,
                               preallocateMillis: preallocate.count == seconds.count ? preallocate : nil,
                               agentCPUSeconds: cpu.count == seconds.count ? cpu : nil)
    }

    // MARK: Baselines

    private func measureBaselines(loopback: LoopbackBaselines, cores: Int) throws(AgentError) -> Baselines {
        let samples = configuration.baselineSamples
        configuration.progress("bench: baseline: kernel first-touch fault on anonymous memory (\(samples) pages)")
        let firstTouch = try FirstTouchBaseline.measure(pages: samples, seed: 1)
        distributions.append(("baseline-first-touch", firstTouch.histogram))

        var placements: [Placement] = [.unpinned]
        if configuration.pinnedBaselines { placements += cores >= 2 ? [.sameCPU, .crossCPU] : [.sameCPU] }
        var uffd: [LatencyBaseline] = []
        var rtt: [LatencyBaseline] = []
        var floors: [FaultFloor] = []
        for placement in placements {
            let suffix = placement == .unpinned ? "" : "-\(placement.rawValue)"
            configuration.progress("bench: baseline: raw userfaultfd MISSING and MINOR resolution, \(placement.rawValue)")
            let missing = try UffdResolutionBaseline.measure(.missingCopy, pages: samples, placement: placement, seed: 2)
            let minor = try UffdResolutionBaseline.measure(.minorContinue, pages: samples, placement: placement, seed: 2)
            configuration.progress("bench: baseline: loopback TCP round trip, \(placement.rawValue)")
            let roundTrip = try loopback.roundTrips(samples: samples, placement: placement)
            for m in [missing, minor, roundTrip] { distributions.append(("baseline-\(m.baseline.id)\(suffix)", m.histogram)) }
            uffd += [missing.baseline, minor.baseline]
            rtt.append(roundTrip.baseline)
            floors.append(FaultFloor(placement: placement, uffd: missing.baseline.latency, rtt: roundTrip.baseline.latency))
        }
        configuration.progress("bench: baseline: loopback bulk bandwidth (\(configuration.bandwidthTransfers) × \(ByteSize(bytes: configuration.bandwidthBytes)))")
        let bandwidth = try loopback.bandwidth(bytes: configuration.bandwidthBytes, transfers: configuration.bandwidthTransfers)
        return Baselines(firstTouch: firstTouch.baseline, userfaultfd: uffd, roundTrip: rtt, bandwidth: bandwidth, floors: floors)
    }

    // MARK: Helpers

    private func makeWorkDirectory() throws(AgentError) {
        workDirectory = configuration.workDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-bench-\(getpid())").path
        do {
            try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        } catch {
            throw .system("cannot create \(workDirectory): \(error.reasonText)")
        }
    }

    /// Whether this build's source agent offers hybrid pre-copy (`--precopy-rounds`), which stale pages need.
    static func sourceCanPrecopy(_ executable: String) -> Bool {
        guard let help = try? AgentProcess(executable: executable, arguments: ["source", "--help"], stderrPath: "/dev/null"),
              help.wait(seconds: 30) != nil else { return false }
        return help.capturedOutput.contains("--precopy-rounds")
    }
}

extension ScenarioRun {
    init(_ o: AgentPair.Outcome) {
        let d = o.destination
        self.init(latency: LatencySummary(o.histogram), touchSeconds: d.guest?.touchSeconds ?? 0, elapsedSeconds: d.elapsedSeconds,
                  demandPages: d.demandPages, backgroundPages: d.backgroundPages, missingFaults: d.missingFaults,
                  staleFaults: d.staleFaults, sharedFaults: d.sharedFaults, lateFaults: d.lateFaults,
                  duplicatePages: d.duplicatePages, eexistRaces: d.eexistRaces, precopyPages: d.precopyPages,
                  staleAtSwitchover: d.pagesProtectedAtSwitchover, refreshedPages: d.refreshedPages,
                  unchangedPages: d.unchangedPages, phases: d.phases, integrity: o.integrity, load: o.load,
                  downtimeMillis: o.source.precopyRounds.isEmpty ? nil
                      : (o.source.pauseToSwitchoverMillis + d.switchoverApplyMillis).rounded(toPlaces: 3),
                  destinationMemory: d.memory, agentCPUSeconds: o.agentCPUSeconds,
                  guestCPUSeconds: d.guestCPUSecondsDuringMigration.map { $0.rounded(toPlaces: 3) })
    }
}

extension ScenarioResult {
    init(scenario: BenchScenario, arenaBytes: Int, runs: [ScenarioRun], merged: Histogram<UInt64>, floor: FaultFloor) {
        let latency = LatencySummary(merged)
        let touch = runs.map(\.touchSeconds).reduce(0, +)
        let median = runs.sorted { $0.latency.p50 < $1.latency.p50 }[runs.count / 2]
        let hasFaults = latency.count > 0
        self.init(
            name: scenario.name, scenario: scenario, arenaBytes: arenaBytes, runs: runs, latency: latency, faultsMeasured: latency.count,
            faultsPerSecond: touch > 0 ? (Double(latency.count) / touch).rounded() : 0,
            touchSeconds: runs.map(\.touchSeconds).sorted()[runs.count / 2].rounded(toPlaces: 3),
            p50OverFloor: hasFaults && floor.p50 > 0 ? (latency.p50 / floor.p50).rounded(toPlaces: 2) : nil,
            p99OverFloor: hasFaults && floor.p99 > 0 ? (latency.p99 / floor.p99).rounded(toPlaces: 2) : nil,
            phases: median.phases,
            busy: runs.contains { $0.load.isBusy },
            migrationSeconds: runs.map(\.elapsedSeconds).sorted()[runs.count / 2])
    }
}
