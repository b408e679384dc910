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
    /// Faults on absent pages (requested, resolved with `UFFDIO_COPY`).
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
    /// From the guest state's arrival until the guest ran: mapping and protecting.
    public var switchoverApplyMillis = 0.0
    public var faultLatencyMicros: LatencySummary?
    /// Destination-side phases of a demand fault, in microseconds.
    public var phases: FaultPhases?
    /// Demand faults by loop-side latency (fault read until resolved) in log2 buckets of
    /// microseconds, as QEMU's `postcopy-latency-dist`: entry i counts [2^i, 2^(i+1)) µs.
    public var demandLatencyLog2Micros: [UInt64]?
    public var elapsedSeconds = 0.0
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
    /// Bytes of pages that came after the guest gave them back (not installed).
    public var pagesDiscardedAsRemoved = 0
    public var sourceDigest: String?
    public var destinationDigest: String?
    public var arenaVerified = false
    public var guest: GuestSummary?

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
    public var guestPagesWritten = 0
    public var elapsedSeconds = 0.0
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
