import MigrateAgent

/// Everything one `migrate-agent bench` run measured (`--json`). Latencies are
/// in microseconds, rates in bytes (or decimal megabytes) per second.
/// Value types throughout: built on the benchmark's controlling thread.
public struct BenchReport: Codable, Sendable {
    public var formatVersion = 2
    public var succeeded = false
    public var error: String?
    public var machine: MachineInfo
    public var settings: BenchSettings
    /// The backend `auto` picked on this kernel.
    public var backend: BackendKind
    public var baselines: Baselines?
    /// The unpinned floor measured again after the agent scenarios: how far conditions drifted.
    public var floorAtEnd: FaultFloor?
    public var scenarios: [ScenarioResult] = []
    /// Scenarios asked for (or in the default list) that did not run, with the reason.
    public var skipped: [SkippedScenario] = []
    public var migrations: [MigrationResult] = []
    /// Issue 9's real links (network namespaces joined by a shaped veth pair), measured or skipped.
    public var links: [LinkResult] = []
    /// Issue 10's working set: hot-first against address order, the tracker's cost, the estimate's quality.
    public var workingSet: WorkingSetResult? = nil
    /// The production path: the destination as a separate VMM's page-fault handler (`--uffd-socket`), the stand-in VMM.
    public var handlerMode: HandlerModeResult? = nil
    public var targets: [TargetResult] = []
    /// Other processes' CPU use over the whole run.
    public var load: OtherLoad?
    public var warnings: [String] = []
    public var notes: [String] = []
    public var elapsedSeconds = 0.0
}

/// The options a run used, so that it can be repeated.
public struct BenchSettings: Codable, Sendable {
    public var arenaBytes: Int
    public var repetitions: Int
    public var writeRatio: Double
    public var scenarios: [String]
    public var migrationSizes: [Int]
    public var baselineSamples: Int
    public var bandwidthBytes: Int
    /// `--busy-poll` given to both agents; nil: their default.
    public var busyPollMicros: Int?
    /// Both agents ran with `--encrypt` (nil in reports from before the option: off).
    public var encrypt: Bool? = nil
    /// `--loop-slice` given to both agents; nil: the kernel's default.
    public var loopSliceMicros: Int? = nil
    /// The destinations' `--[no-]yield-to-demand`; nil: their default.
    public var yieldToDemand: Bool? = nil
    /// The destinations' `--install-thread` (auto, always, never); nil: their default.
    public var installThread: String? = nil
    /// `--links`: the link rates asked for (empty: none).
    public var links: [String]? = nil
    public var commandLine: [String]
}

public struct SkippedScenario: Codable, Sendable {
    public var name: String
    public var reason: String
}

/// Integrity of one agent run; every flag must hold or the benchmark fails.
public struct RunIntegrity: Codable, Sendable {
    public var digestMatch: Bool
    public var arenaVerified: Bool
    public var guestMismatches: Int
    public var sourceSawDigestMatch: Bool
}

/// One repetition of an agent scenario.
public struct ScenarioRun: Codable, Sendable {
    public var latency: LatencySummary
    public var touchSeconds: Double
    /// Destination: connect until every page was present.
    public var elapsedSeconds: Double
    public var demandPages: Int
    public var backgroundPages: Int
    /// Faults on absent pages and on stale (pre-copied, then dirtied) pages, as the destination counted them.
    public var missingFaults: Int
    public var staleFaults: Int
    public var sharedFaults: Int
    public var lateFaults: Int
    public var duplicatePages: Int
    public var eexistRaces: Int
    /// Hybrid pre-copy: pages sent before switch-over, protected as stale at switch-over,
    /// refreshed with new bytes, and answered "unchanged".
    public var precopyPages: Int
    public var staleAtSwitchover: Int
    public var refreshedPages: Int
    public var unchangedPages: Int
    public var phases: FaultPhases?
    public var integrity: RunIntegrity
    public var load: OtherLoad
    /// Hybrid pre-copy: the guest paused on the source until it ran on the destination
    /// (the source's pause-to-send plus the destination's apply, as `demo` reports it).
    public var downtimeMillis: Double? = nil
    /// The destination's memory once every page was present.
    public var destinationMemory: ProcessMemory? = nil
    /// CPU-seconds both agents used during the migration (the destination's guest threads included).
    public var agentCPUSeconds: Double? = nil
    /// The part of it the destination's guest threads used.
    public var guestCPUSeconds: Double? = nil
}

/// One agent scenario over all its repetitions.
public struct ScenarioResult: Codable, Sendable {
    public var name: String
    public var scenario: BenchScenario
    public var arenaBytes: Int
    public var runs: [ScenarioRun]
    /// Guest-measured first accesses of demand-fetched pages, all runs merged.
    public var latency: LatencySummary
    public var faultsMeasured: UInt64
    /// Faults measured per second of guest touching, over all runs.
    public var faultsPerSecond: Double
    /// Median over runs of the time the guest took to touch its pages.
    public var touchSeconds: Double
    /// p50 and p99 over the floor's (`Baselines.floor`, normally the same-cpu one).
    public var p50OverFloor: Double?
    public var p99OverFloor: Double?
    /// The destination's phase breakdown of the run with the median p50.
    public var phases: FaultPhases?
    /// Other processes were busy during at least one run.
    public var busy: Bool
    /// Median over runs of the destination's whole-migration time (connect until every page present).
    public var migrationSeconds: Double? = nil
}

/// Whole-migration time of an idle guest (nothing faults; only the background stream).
public struct MigrationResult: Codable, Sendable {
    public var arenaBytes: Int
    /// Destination-side seconds (connect until every page present), per run.
    public var runSeconds: [Double]
    public var seconds: Double
    public var megabytesPerSecond: Double
    /// Of the loopback bulk bandwidth measured in the same run (its best transfer).
    public var fractionOfLoopback: Double?
    /// The local install rate of the same bytes, measured right before these migrations.
    public var localInstall: LocalInstallRate?
    /// Of that local install rate (its fastest pass).
    public var fractionOfLocalInstall: Double?
    /// Freed memory the guest reported to the host during each run (KiB), where the kernel counts it.
    public var reportedFreeKiB: [Int]?
    public var integrity: [RunIntegrity]
    public var load: [OtherLoad]
    public var busy: Bool
    /// The destination's memory once every page was present, per run.
    public var destinationMemory: [ProcessMemory]? = nil
    /// How long the destination took to allocate its arena before it connected
    /// (`--preallocate`), per run; not part of `runSeconds`. nil: not preallocated.
    public var preallocateMillis: [Double]? = nil
    /// CPU-seconds both agents used during each run's migration.
    public var agentCPUSeconds: [Double]? = nil
}

extension MigrationResult {
    /// The median allocation before connecting, as a phrase ("" when not preallocated).
    var preallocatedNote: String {
        guard let median = WorkingSetTargets.median(preallocateMillis ?? []) else { return "" }
        return String(format: "the destination allocated its arena before connecting, in %.0f ms (median; not in the migration's time)", median)
    }
}

/// One real link of issue 9: the source and the destination in network
/// namespaces of their own, joined by a veth pair shaped with `tc ... tbf` to
/// `rateBitsPerSecond` in both directions.
public struct LinkResult: Codable, Sendable {
    /// As asked for: `1gbit`, `10gbit`.
    public var name: String
    public var rateBitsPerSecond: Double
    /// The shaping, as the `tc` command line (without the device).
    public var shaping: String
    /// Why the link was not measured (not root, no `ip` or `tc`, the kernel refused the qdisc), or nil.
    public var skipped: String?
    /// The source's `--max-bandwidth` as a percentage of the link's rate (its stream paced to what
    /// demand pages leave of it), or nil: unpaced.
    public var pacingPercent: Int?
    /// A 16-byte request and a 4 KiB reply across the shaped link while it is idle, at `floor`'s placement.
    public var roundTrip: LatencyBaseline?
    /// Raw userfaultfd resolution (this run's, same placement) plus `roundTrip`.
    public var floor: FaultFloor?
    /// Bulk transfer across the shaped link.
    public var bandwidth: BandwidthBaseline?
    /// Agent scenarios over the link (the background stream saturating it).
    public var scenarios: [ScenarioResult] = []
    /// An idle guest's whole migration over the link.
    public var migration: MigrationResult?
    /// That migration's rate over the link's rate.
    public var migrationFractionOfLink: Double?
}

/// One target from issue 4, 9 or 10 (or a figure shown among them), judged on this run's figures.
public struct TargetResult: Codable, Sendable {
    public var id: String
    /// Which issue's targets it belongs to (`issue 4`, `issue 9: under load`); nil in older reports.
    public var group: String? = nil
    /// The target, in words.
    public var target: String
    /// What was compared with what.
    public var basis: String
    public var value: Double?
    public var limit: Double
    public var unit: String
    /// nil: not measured in this run (a scenario it needs did not run), or a figure.
    public var met: Bool?
    /// A figure shown beside the targets, with no limit to meet (`limit` is meaningless).
    public var figure: Bool? = nil
    /// The same figure against the pinned floors (the two regimes of a fault on this machine).
    public var context: String?
    /// Where the time goes, from the phase breakdown, when the target is missed.
    public var whereTheTimeGoes: String?

    /// A figure shown beside the targets: no limit, no verdict; its value is set once measured.
    static func figure(id: String, target: String, basis: String, unit: String) -> TargetResult {
        var t = TargetResult(id: id, target: target, basis: basis, value: nil, limit: 0, unit: unit)
        t.figure = true
        return t
    }
}
