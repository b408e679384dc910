import CGuestAccess

/// The state of one page on the destination.
public enum PageState: UInt8, Sendable {
    /// Never received; a guest access faults as MISSING.
    case absent = 0
    /// Absent and a demand request is on its way: further faults wait on it.
    case requested = 1
    /// Received and mapped; the guest runs on it freely.
    case present = 2
    /// Received, then reported dirtied on the source: protected until refreshed.
    case stale = 3
    /// Stale and a refresh request is on its way.
    case staleRequested = 4
    /// Given back by the guest (a VMM's balloon: `UFFD_EVENT_REMOVE`) before it
    /// arrived: it reads zeros from now on, never the source's bytes.
    case removed = 5
    /// Absent, and its bytes are with the background installer's thread
    /// (`BackgroundInstaller`): a fault waits for that install, which wakes it.
    case arriving = 6
}

/// One byte of state per page in a flat array indexed by page number, plus
/// counters (docs/architecture.md, "The page tracker").
///
/// Threading: the loop thread owns it and is the only writer. Guest threads may
/// call `wasDemandFetched` (an acquire load of one byte) to classify their own
/// accesses; the background installer's worker reads the pages it holds with
/// `stateFromAnyThread`. Nothing here allocates after init.
public final class PageTracker: @unchecked Sendable {
    public let pageCount: Int
    private let bytes: UnsafeMutablePointer<UInt8>
    /// Pages in `.present` state.
    public private(set) var presentCount = 0
    /// Pages currently `.stale` or `.staleRequested`.
    public private(set) var staleCount = 0
    /// Pages given back by the guest (`.removed`): they need nothing from the source.
    public private(set) var removedCount = 0

    private static let stateMask: UInt8 = 0x0F
    /// Set when the page arrived as the answer to a guest fault.
    private static let demandFlag: UInt8 = 0x80

    public init(pageCount: Int) {
        self.pageCount = pageCount
        bytes = .allocate(capacity: pageCount)
        bytes.initialize(repeating: PageState.absent.rawValue, count: pageCount)
    }

    deinit { bytes.deallocate() }

    @inline(__always) public func state(_ page: Int) -> PageState {
        PageState(rawValue: bytes[page] & Self.stateMask)!
    }

    /// Moves `page` to `state`, keeping the counters right. Arriving (`.present`)
    /// sets or clears the demand flag; other moves keep it.
    @inline(__always) public func set(_ page: Int, _ state: PageState, demand: Bool = false) {
        let old = self.state(page)
        if old == .present { presentCount -= 1 }
        if old == .stale || old == .staleRequested { staleCount -= 1 }
        if old == .removed { removedCount -= 1 }
        if state == .present { presentCount += 1 }
        if state == .stale || state == .staleRequested { staleCount += 1 }
        if state == .removed { removedCount += 1 }
        let flag = state == .present ? (demand ? Self.demandFlag : 0) : (demand ? Self.demandFlag : bytes[page] & Self.demandFlag)
        atomic_store_u8(bytes + page, state.rawValue | flag)
    }

    /// `state`, from a thread other than the loop (an acquire load of one byte).
    @inline(__always) public func stateFromAnyThread(_ page: Int) -> PageState {
        PageState(rawValue: atomic_load_u8(bytes + page) & Self.stateMask)!
    }

    /// Whether the page's last arrival answered a guest fault. Any thread.
    @inline(__always) public func wasDemandFetched(_ page: Int) -> Bool {
        atomic_load_u8(bytes + page) & Self.demandFlag != 0
    }

    /// Every page is here, or was given back and reads zeros.
    public var isComplete: Bool { presentCount + removedCount == pageCount }
    public var missingCount: Int { pageCount - presentCount - removedCount }
}

extension PageTracker {
    /// Calls `body(first, count)` for each run of consecutive pages whose state matches.
    func forEachRun(where matches: (PageState) -> Bool, _ body: (Int, Int) throws(AgentError) -> Void) throws(AgentError) {
        var page = 0
        while page < pageCount {
            guard matches(state(page)) else { page += 1; continue }
            var end = page + 1
            while end < pageCount && matches(state(end)) { end += 1 }
            try body(page, end - page)
            page = end
        }
    }
}
