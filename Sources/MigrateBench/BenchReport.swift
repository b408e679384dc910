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
}

/// One target from issue 4, judged on this run's figures.
public struct TargetResult: Codable, Sendable {
    public var id: String
    /// The target, in words.
    public var target: String
    /// What was compared with what.
    public var basis: String
    public var value: Double?
    public var limit: Double
    public var unit: String
    /// nil: not measured in this run (a scenario it needs did not run).
    public var met: Bool?
    /// The same figure against the pinned floors (the two regimes of a fault on this machine).
    public var context: String?
    /// Where the time goes, from the phase breakdown, when the target is missed.
    public var whereTheTimeGoes: String?
}
