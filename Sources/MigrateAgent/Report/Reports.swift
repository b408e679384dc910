/// What the destination agent reports at the end of a migration (also as JSON).
public struct DestinationReport: Codable, Sendable {
    public var backend: BackendKind
    /// How the source proved itself: "pre-shared key" or "none (--insecure)".
    public var authentication = ""
    public var arenaBytes: Int
    public var pageSize: Int
    public var pageCount: Int
    public var succeeded = false
    public var error: String?
    public var pagesMissing = 0
    /// Times the session was resumed after a connection dropped.
    public var resumes = 0
    public var demandPages = 0
    public var backgroundPages = 0
    /// Of `backgroundPages`, those the installer thread installed (the rest, the loop).
    public var backgroundPagesOnInstallerThread = 0
    /// Pages that arrived again after they were installed (demand/background race).
    public var duplicatePages = 0
    /// Pages sent as demand answers that were never requested: installed all the same
    /// (they are the source's bytes), counted because a correct source never does it.
    public var unrequestedPages = 0
    /// `UFFDIO_COPY` answered EEXIST: the page was already there.
    public var eexistRaces = 0
    /// Fault messages read from the userfaultfd.
    public var faultMessages = 0
    /// Faults on a page already requested: they waited on the first request.
    public var sharedFaults = 0
    /// Fault messages for pages installed meanwhile (woken, not requested).
    public var lateFaults = 0
    /// Protected faults on pages already present (a COPY was mapping them): the held page was mapped.
    public var heldPagesMapped = 0
    /// Faults whose kind disagreed with the tracker (logged as errors).
    public var disagreements = 0
    /// Faults on absent pages (requested, resolved with `UFFDIO_COPY`, or `UFFDIO_CONTINUE` on preallocated memory).
    public var missingFaults = 0
    /// Faults on stale, protected pages (requested, resolved by refresh and unprotect).
    public var staleFaults = 0
    /// Stale pages the source reported unchanged: unprotected without a page transfer.
    public var unchangedPages = 0
    /// Stale pages refreshed with new bytes (on demand or from the background stream).
    public var refreshedPages = 0
    /// Pages received before switch-over (pre-copy), written through the io view.
    public var precopyPages = 0
    /// Pages the stale set protected at switch-over.
    public var pagesProtectedAtSwitchover = 0
    /// From the guest state's arrival until the guest ran: protecting the stale pages.
    public var switchoverApplyMillis = 0.0
    /// Allocating the whole arena before connecting (`--preallocate`, minor backend;
    /// nil: pages were allocated as they arrived). Not part of `elapsedSeconds`.
    public var preallocateMillis: Double?
    /// Pre-copied pages mapped into the guest view after the guest started (minor backend).
    public var pagesMappedAfterSwitchover = 0
    /// The hot set the source announced (its guest's most used pages, streamed first),
    /// how many of them the guest here still faulted on, and how long after switch-over
    /// the last of them was resident (nil: no hot set, or not all arrived).
    public var hotSetPages = 0
    public var hotSetDemandFaults = 0
    public var hotSetResidentMillis: Double?
    /// Pages present (hot or not) when the last hot page became resident.
    public var hotSetResidentWithPages: Int?
    /// `--keep-stale-on-failure` was used: the migration failed with these pages
    /// still stale, and the guest was let run on their old copies (RWP_ASYNC).
    public var staleKeptPages: Int?
    public var faultLatencyMicros: LatencySummary?
    /// Destination-side phases of a demand fault, in microseconds.
    public var phases: FaultPhases?
    /// Demand faults by loop-side latency (fault read until resolved) in log2 buckets of
    /// microseconds, as QEMU's `postcopy-latency-dist`: entry i counts [2^i, 2^(i+1)) µs.
    public var demandLatencyLog2Micros: [UInt64]?
    public var elapsedSeconds = 0.0
    /// This process's CPU (loop, installer, guest threads) over `elapsedSeconds`:
    /// from connecting until every page was present.
    public var cpuDuringMigration: ProcessCPU?
    /// The part of it the guest's own threads used (a workload that reports it).
    public var guestCPUSecondsDuringMigration: Double?
    public var digestMatch = false
    /// The source acknowledged the end of the migration (it may release the guest's memory).
    public var sourceConfirmed = false
    /// Something worth knowing that did not fail the migration.
    public var warning: String?
    /// Handler mode: the VMM whose memory was filled (pid, regions), or nil.
    public var vmmPID: Int32?
    public var vmmRegions: Int?
    /// The VMM exited before the end (no live VM was owed pages any more).
    public var vmmExited = false
    /// The migration failed and the VMM was killed (`--kill-vmm-on-failure`).
    public var vmmKilled = false
    /// Ranges the guest gave back (`UFFD_EVENT_REMOVE`), pages in them not yet
    /// received, faults on them answered with zero pages, and installs an unread
    /// event deferred (`EAGAIN`).
    public var removedRanges = 0
    public var removedPages = 0
    public var zeroPages = 0
    public var deferredInstalls = 0
    /// Pages that arrived as `zeroPages` frames (all zero at the source): mapped as zero pages.
    public var zeroPagesReceived = 0
    /// Bytes of pages that came after the guest gave them back (not installed).
    public var pagesDiscardedAsRemoved = 0
    public var sourceDigest: String?
    public var destinationDigest: String?
    public var arenaVerified = false
    public var guest: GuestSummary?
    /// This process's RSS and PSS once every page was present and the source
    /// confirmed, before teardown (nil where the kernel has no `smaps_rollup`).
    public var memory: ProcessMemory?

    public init(backend: BackendKind, arenaBytes: Int, pageSize: Int) {
        self.backend = backend
        self.arenaBytes = arenaBytes
        self.pageSize = pageSize
        self.pageCount = arenaBytes / pageSize
    }
}

/// Where a demand fault's time goes on the destination.
public struct FaultPhases: Codable, Sendable {
    /// Guest access began until the loop read the fault message (kernel delivery and loop wake-up).
    public var delivered: LatencySummary
    /// Fault message read from the userfaultfd until the request was handed to the socket.
    public var requestWritten: LatencySummary
    /// Request written until the page's bytes were read from the socket (network and source).
    public var pageReceived: LatencySummary
    /// Page read until `UFFDIO_COPY` (or the unprotect) returned.
    public var resolved: LatencySummary
    /// Resolved until the guest thread ran again (the kernel waking it).
    public var woken: LatencySummary
    /// Fault message read until resolved.
    public var total: LatencySummary
    /// Demand faults left out of these phases: more were in flight at once than the clock holds.
    public var unmeasured: Int? = nil
}

/// What the destination's guest did, as its workload reports it.
public struct GuestSummary: Codable, Sendable {
    public var threads: Int
    /// How the guest walked its pages (the synthetic guest's pattern name).
    public var pattern: String
    public var accesses = 0
    public var pagesTouched = 0
    public var demandFaults = 0
    public var writes = 0
    public var mismatches = 0
    public var firstMismatch: String?
    public var finished = false
    public var touchSeconds = 0.0

    public init(threads: Int, pattern: String) {
        self.threads = threads
        self.pattern = pattern
    }
}

/// What the source agent reports at the end of a migration.
public struct SourceReport: Codable, Sendable {
    public var arenaBytes: Int
    public var pageSize: Int
    public var pageCount: Int
    public var succeeded = false
    public var error: String?
    public var demandRequests = 0
    public var demandPagesSent = 0
    public var backgroundPagesSent = 0
    /// Pages of the pre-copy rounds and the background stream that were all zero:
    /// sent as `zeroPages` frames, a header without the page.
    public var zeroPagesSent = 0
    public var guestPagesWritten = 0
    public var elapsedSeconds = 0.0
    /// This process's CPU over `elapsedSeconds` (from the destination's connection to the end).
    public var cpuDuringMigration: ProcessCPU?
    public var digest: String?
    public var destinationDigestMatch = false
    /// How pages dirtied during pre-copy were found (nil without pre-copy).
    public var dirtyTracking: String?
    public var precopyRounds: [PrecopyRound] = []
    /// Pages dirtied since they were last sent, protected at the destination at switch-over.
    public var staleAtSwitchover = 0
    /// Stale-page requests whose hash still matched: answered "unchanged", no page sent.
    public var unchangedAnswers = 0
    /// Guest paused until the stale set and the guest state were handed to the socket.
    public var pauseToSwitchoverMillis = 0.0
    /// How connections proved themselves: "pre-shared key" or "none (--insecure)".
    public var authentication = ""
    /// Connections refused: no key proof, too slow to finish the handshake, or too many at once.
    public var refusedConnections = 0
    /// Times the destination resumed the session after its connections dropped.
    public var resumes = 0
    /// The warm-up's access tracking (`--track-seconds`), or nil.
    public var workingSet: WorkingSetReport?
    /// Pages the background stream (or the first pre-copy round) sent first, hottest
    /// first or in trace order, and how many of them it sent itself (the rest went on demand).
    public var streamHeadPages = 0
    public var streamHeadPagesSent = 0
    /// With an access trace (recorded or prefetched): distinct pages requested on demand.
    public var distinctDemandPages: Int?
    /// `--record-trace`: the file written, the pages in it (in order of first
    /// demand request), and whether the migration failed after switch-over (the
    /// trace then holds the requests until the failure).
    public var traceFile: String?
    public var tracePagesRecorded: Int?
    public var tracePartial: Bool?
    /// `--prefetch-trace`: the trace, its pages put at the head of the background
    /// stream, and the distinct pages requested on demand that it listed.
    public var prefetchTraceFile: String?
    public var tracePagesPrefetched: Int?
    public var demandPagesPredicted: Int?

    public init(arenaBytes: Int, pageSize: Int) {
        self.arenaBytes = arenaBytes
        self.pageSize = pageSize
        self.pageCount = arenaBytes / pageSize
    }
}

/// One pre-copy round: pages sent while the guest ran, and pages it dirtied meanwhile.
public struct PrecopyRound: Codable, Sendable {
    public var round: Int
    public var pagesSent: Int
    public var pagesDirtied: Int
    public var seconds: Double
}

/// A 128-bit digest as 32 hex digits.
func hex(_ value: UInt128) -> String {
    let s = String(value, radix: 16)
    return String(repeating: "0", count: max(0, 32 - s.count)) + s
}

/// The source's warm-up with access tracking: what the guest's working set
/// looked like, what tracking cost it, and how good the estimate was.
public struct WorkingSetReport: Codable, Sendable {
    /// `rwp-async`, `minor-sampling`, or `off` (a warm-up without tracking: the baseline).
    public var method: String
    public var intervalMillis: Int
    /// Share of the arena watched per interval (the emulation samples; RWP watches all).
    public var samplePercent: Int
    public var seconds = 0.0
    /// Pages accessed per interval, oldest first.
    public var pagesAccessedPerInterval: [Int] = []
    /// Pages accessed in the last four intervals at the end.
    public var estimatedWorkingSetPages = 0
    /// Pages hot enough to go first and be announced to the destination.
    public var hotSetPages = 0
    /// The guest's accesses per second during the warm-up, when it counts them:
    /// set against a warm-up with tracking `off`, the tracker's cost.
    public var guestAccessesPerSecond: Double?
    /// Against the pages the guest says it touched (the synthetic guest): the share of
    /// them the tracker saw (recall) and the share of what it saw that they were (precision).
    public var recall: Double?
    public var precision: Double?
    public var costs: AccessTrackingCosts?

    public init(method: String, intervalMillis: Int, samplePercent: Int) {
        self.method = method
        self.intervalMillis = intervalMillis
        self.samplePercent = samplePercent
    }
}
