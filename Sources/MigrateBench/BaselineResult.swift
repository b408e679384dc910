import Histogram
import MigrateAgent

/// One same-run baseline latency distribution (microseconds in the summary).
/// A value type.
public struct LatencyBaseline: Codable, Sendable {
    /// Short id, also the CSV file name: `first-touch`, `uffd-missing`, `uffd-minor`, `loopback-rtt`, ...
    public var id: String
    /// What was timed, in words.
    public var what: String
    public var placement: Placement
    public var latency: LatencySummary
    /// Fraction of samples in which both sides were seen on the same CPU (userfaultfd baselines).
    public var sameCPUFraction: Double?
}

/// A measured distribution with the histogram it came from (the histogram
/// feeds the CSV files; only the summary goes into the JSON report).
struct MeasuredLatency: Sendable {
    var baseline: LatencyBaseline
    var histogram: Histogram<UInt64>

    init(id: String, what: String, placement: Placement, histogram: Histogram<UInt64>, sameCPUFraction: Double? = nil) {
        baseline = LatencyBaseline(id: id, what: what, placement: placement, latency: LatencySummary(histogram),
                                   sameCPUFraction: sameCPUFraction.map { ($0 * 1000).rounded() / 1000 })
        self.histogram = histogram
    }
}

/// Loopback TCP bulk bandwidth between two processes.
public struct BandwidthBaseline: Codable, Sendable {
    public var bytesPerTransfer: Int
    /// Every transfer's rate, bytes per second.
    public var transfers: [Double]
    /// The best rate, bytes per second: what whole migrations are compared with.
    public var best: Double
    public var median: Double
}

/// One pass of the local install baseline (`LocalInstallBaseline`): every page
/// of a fresh memfd installed with `UFFDIO_COPY` from local memory.
public struct LocalInstallPass: Codable, Sendable {
    /// Which pass, in words.
    public var what: String
    /// Bytes of another memfd, filled page by page before the pass, held while it ran (0: none).
    public var heldBytes: Int
    /// Time of the copies alone (not creating, registering, verifying or freeing the arena).
    public var seconds: Double
    /// 10⁶ bytes per second.
    public var megabytesPerSecond: Double
    public var microsPerPage: Double
    /// µs per page in each successive quarter of the arena, in install order:
    /// whether installing slows down as it reaches memory not touched before.
    public var segmentMicrosPerPage: [Double]
    /// Freed memory the guest reported to the host during the pass (KiB), where the kernel counts it.
    public var reportedFreeKiB: Int?
}

/// The local install rate measured right before the idle migrations of one
/// size: the same bytes into a fresh memfd registered as the destination's,
/// `UFFDIO_COPY` in runs of `bytesPerCopy` from a local buffer, no network.
public struct LocalInstallRate: Codable, Sendable {
    public var bytes: Int
    public var bytesPerCopy: Int
    /// The destination's backend, whose registration the arena had.
    public var backend: BackendKind
    /// The userfaultfd modes registered, in words.
    public var registration: String
    /// A fresh memfd; another right after it; another while a filled memfd of the same size is held.
    public var passes: [LocalInstallPass]
    /// The fastest pass: what whole migrations are compared with.
    public var bestMegabytesPerSecond: Double
    public var bestMicrosPerPage: Double
    /// The destination's 128-bit hash of a page (it hashes every page it installs), µs per page.
    public var hashMicrosPerPage: Double
}

/// The floor for a remote fault on this machine: raw userfaultfd resolution
/// (MISSING + `UFFDIO_COPY`) plus one loopback round trip, per percentile.
public struct FaultFloor: Codable, Sendable {
    public var placement: Placement
    public var p50: Double
    public var p99: Double

    init(placement: Placement, uffd: LatencySummary, rtt: LatencySummary) {
        self.placement = placement
        p50 = (uffd.p50 + rtt.p50).rounded(toPlaces: 2)
        p99 = (uffd.p99 + rtt.p99).rounded(toPlaces: 2)
    }
}

/// Every baseline of one run.
public struct Baselines: Codable, Sendable {
    /// Kernel first-touch (write) fault on anonymous memory, no userfaultfd.
    public var firstTouch: LatencyBaseline
    /// MISSING + `UFFDIO_COPY` and MINOR + `UFFDIO_CONTINUE`, unpinned and pinned.
    public var userfaultfd: [LatencyBaseline]
    /// 16-byte request, 4 KiB reply between two processes, unpinned and pinned.
    public var roundTrip: [LatencyBaseline]
    public var bandwidth: BandwidthBaseline
    /// The floor per placement.
    public var floors: [FaultFloor]

    /// The floor agent figures are compared with: the placement with the lowest
    /// p50 (normally same-cpu). Unpinned, the raw handler lands on either CPU as
    /// the scheduler likes, so the unpinned floor mixes the slow cross-CPU
    /// wake-up regime into the reference by chance; an agent that avoids that
    /// wake-up (it busy-polls) would beat such a floor without being fast.
    public var floor: FaultFloor? { floors.min { $0.p50 < $1.p50 } }

    public func floor(_ placement: Placement) -> FaultFloor? { floors.first { $0.placement == placement } }

    public func userfaultfd(_ id: String, _ placement: Placement) -> LatencyBaseline? {
        userfaultfd.first { $0.id == id && $0.placement == placement }
    }

    public func roundTrip(_ placement: Placement) -> LatencyBaseline? { roundTrip.first { $0.placement == placement } }
}
