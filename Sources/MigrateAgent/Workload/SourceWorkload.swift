/// What runs in the guest's memory on the source, as the engine sees it:
/// something that writes the arena until it is paused at switch-over, and
/// whose state then moves to the destination as opaque bytes. The synthetic
/// guest (target `SyntheticGuest`) is one implementation; the engine never
/// constructs one and never reads its state.
///
/// Threading: every method is called from the source's controlling thread
/// (before the loop runs, or on the loop thread); the workload's own threads
/// only touch guest memory.
public protocol SourceWorkload: AnyObject {
    /// Writes the guest's initial memory, before any tracking starts.
    func populate()
    /// Starts running: from now on writes must be tracked (dirty tracking is armed first).
    func resume()
    /// Stops every writer and waits for it; the arena is frozen afterwards.
    /// `whileWaiting` runs between short waits: a writer blocked on a
    /// synchronous write-protect fault needs the caller to resolve it.
    func pause(whileWaiting: () -> Void)
    /// The state that moves with the guest at switch-over (after `pause`).
    func switchoverState() -> [UInt8]
    /// Pages written since `resume`, for the report.
    var pagesWritten: Int { get }
    /// Accesses made so far, when the workload counts them (the synthetic guest):
    /// the access tracker's cost to it. nil: unknown (a real guest).
    var accessCount: Int? { get }
    /// The pages touched since the previous call, ascending, when the workload knows
    /// (the synthetic guest): the truth a working-set estimate is checked against.
    func takeTouchedPages() -> [Int]?
}

extension SourceWorkload {
    public var accessCount: Int? { nil }
    public func takeTouchedPages() -> [Int]? { nil }
}

/// A source with no running guest: the memory is already there and does not change.
public final class FrozenSourceWorkload: SourceWorkload {
    public init() {}
    public func populate() {}
    public func resume() {}
    public func pause(whileWaiting: () -> Void) {}
    public func switchoverState() -> [UInt8] { [] }
    public var pagesWritten: Int { 0 }
}
