import Histogram

/// What the engine lends a destination workload: the guest's memory, and ways
/// to learn how each page got there without touching engine state.
public struct DestinationGuestContext: @unchecked Sendable {
    /// The arena; a workload touches it through the guest view only.
    public let arena: Arena
    /// Whether a page's last arrival answered a guest fault. Any thread.
    public let wasDemandFetched: @Sendable (Int) -> Bool
    /// Where guest threads record when each first access began and returned
    /// (thread `t` in slot `t`), so the destination can split a fault's time into phases.
    public let touchLog: TouchLog
}

/// What a destination workload reports when it is done.
public struct DestinationGuestOutcome: Sendable {
    /// Whether every guest thread finished within the deadline.
    public var finished = false
    /// What the guest did, for the report.
    public var summary: GuestSummary?
    /// Every demand fault's latency as the guest measured it, in nanoseconds.
    public var faultLatency = LatencySummary.makeCompactHistogram()
    /// Whether the whole arena was checked and found right (false when not checked).
    public var arenaVerified = false
    /// Why the guest's run counts as failed (wrong data, did not finish), or nil.
    public var error: String?

    public init() {}
}

/// What runs in the guest's memory on the destination, as the engine sees it:
/// started at switch-over with the state the source sent (opaque bytes), told
/// to stop when the migration fails, and asked for its outcome at the end.
///
/// Threading: `start` and `abort` run on the destination's loop thread,
/// `finish` after the loop ended; the workload's own threads only touch guest
/// memory (and may block on faults the loop resolves).
public protocol DestinationWorkload: AnyObject, CustomStringConvertible {
    /// The threads that touch guest memory: one slot each in the touch log.
    /// Thread `t` touches only the pages whose index `% threadCount == t`.
    var threadCount: Int { get }
    /// Starts the guest with its switch-over state. Throws `.protocolViolation`
    /// when the state does not fit.
    func start(state: UnsafeRawBufferPointer, context: DestinationGuestContext) throws(AgentError)
    /// The migration failed: stop at the next access. Any thread.
    func abort()
    /// Waits for the guest, at most `seconds`, and reports what it did.
    func finish(within seconds: Double) -> DestinationGuestOutcome
    /// CPU time the workload's threads have used since `start` (nil: not known). Any thread.
    func cpuSeconds() -> Double?
}

extension DestinationWorkload {
    public func cpuSeconds() -> Double? { nil }
}
