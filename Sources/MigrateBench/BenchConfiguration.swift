import MigrateAgent
import MigrateDemo

/// Settings of one benchmark run. The defaults finish in a few minutes on a
/// 2-core machine. A value type.
public struct BenchConfiguration: Sendable {
    /// The `migrate-agent` binary started as source, destination and loopback server
    /// (the CLI passes `AgentProcess.currentExecutable`).
    public var executable: String
    /// Guest memory of each agent scenario.
    public var arenaSize = 256 << 20
    /// `default`, `all`, `none`, or scenario names (see `BenchScenario`).
    public var scenarios = ["default"]
    public var repetitions = 3
    public var writeRatio = 0.2
    /// Idle-guest whole migrations; empty for none.
    public var migrationSizes = [256 << 20, 1 << 30]
    /// Faults (or round trips) per baseline distribution.
    public var baselineSamples = 20_000
    /// Bytes per loopback bulk transfer, and how many transfers.
    public var bandwidthBytes = 1 << 30
    public var bandwidthTransfers = 3
    /// Also measure the baselines pinned to one CPU and to two (the two regimes of docs/kernel-and-swift-notes.md).
    public var pinnedBaselines = true
    /// `--busy-poll` for both agents (microseconds); nil: the agents' default.
    public var busyPollMicros: Int?
    /// `--loop-slice` for both agents (microseconds); nil: the kernel's default.
    public var loopSliceMicros: Int?
    /// The destinations' `--yield-to-demand` (true) or `--no-yield-to-demand` (false); nil: their default.
    public var yieldToDemand: Bool?
    /// The destinations' `--install-thread`; nil: their default (auto).
    public var installThread: InstallThreadUse?
    /// Real links (issue 9): the agents in network namespaces joined by a veth pair
    /// shaped to each rate in turn; empty for none.
    public var links: [LinkRate] = []
    /// On a link, the source's bulk stream paced to this percentage of the link's
    /// rate (`source --max-bandwidth`); nil: unpaced.
    public var linkPacingPercent: Int? = nil
    /// Issue 10's working-set figures: the hot-set guest's arena; nil for none.
    public var workingSetBytes: Int? = 256 << 20
    /// Their warm-up (`source --track-seconds`) and scan interval (`--track-interval`).
    public var workingSetSeconds = 1.0
    public var workingSetIntervalMillis = 100
    /// The tracker to use; nil: the best the kernel offers.
    public var workingSetTracking: AccessTrackingMethod?
    /// Handler-mode figures: the size of the image the source serves to the stand-in VMM's handler; nil for none.
    public var handlerModeBytes: Int? = 256 << 20
    /// Both agents of every run encrypt their connections (`--encrypt`).
    public var encrypt = false
    /// Deadline of one agent run (source and destination), seconds.
    public var runTimeoutSeconds = 180.0
    /// Where per-run reports and logs go; nil: a temporary directory, removed after a successful run.
    public var workDirectory: String?
    /// Recorded in the report.
    public var commandLine: [String] = []
    /// Progress lines (for stderr).
    public var progress: @Sendable (String) -> Void = { _ in }
    public init(executable: String) { self.executable = executable }
}
