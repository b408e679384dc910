import MigrateAgent

/// What the engine's working-set warm-up reads from the synthetic guest: its
/// access count (the tracker's cost to it) and the pages it really touched
/// (the truth the estimate is checked against). Only the access workload
/// (a `pattern`) counts them; without one the guest says it does not know.
extension SourceGuest {
    public var accessCount: Int? { pattern == nil ? nil : accesses }
    public func takeTouchedPages() -> [Int]? { pattern == nil ? nil : takeTouched() }
}
