/// What the destination does with one fault, decided from the tracker's state
/// of the page and the kind of fault the kernel reported. Pure, so that every
/// combination is tested; the loop carries the action out.
public enum FaultAction: Equatable, Sendable {
    /// An absent page: request it; it will be installed with `UFFDIO_COPY` (on
    /// preallocated memory: written through the io view and mapped, `UFFDIO_CONTINUE`).
    case requestAbsent
    /// A stale page: request fresh bytes, with the held copy's hash when the backend keeps one.
    case requestStale(withHash: Bool)
    /// A request or a background install of this page is already on its way: this fault waits on it.
    case shareRequest
    /// The page was installed after the fault was queued: wake its thread.
    case wakeLate
    /// A protected (MINOR or RWP) fault on a page held as present. With shmem,
    /// `UFFDIO_COPY` puts the page in the page cache before it maps it, so an
    /// access in between faults as MINOR: the bytes in place are the right ones.
    /// Map what is held; never fetch the page again, the guest may have written it since.
    case mapHeld
    /// The guest gave the page back (`UFFD_EVENT_REMOVE`): it reads zeros.
    case zeroFill
    /// The kind contradicts the tracker: log it as an error and fetch fresh bytes,
    /// never resolve it blindly.
    case disagreement

    /// `keepsStaleCopy`: the backend protects pages in place (minor, rwp), so a
    /// stale page faults as protected; otherwise (missing) it faults as missing.
    /// `absentKind`: how a page that never arrived faults (protected when the
    /// memory was preallocated: then it is in the page cache like a stale page).
    public static func decide(state: PageState, kind: FaultKind, keepsStaleCopy: Bool,
                              absentKind: FaultKind = .missing) -> FaultAction {
        let staleKind: FaultKind = keepsStaleCopy ? .protected : .missing
        switch (state, kind) {
        case (.absent, absentKind): return .requestAbsent
        case (.stale, staleKind): return .requestStale(withHash: keepsStaleCopy)
        case (.requested, _), (.staleRequested, _), (.arriving, _): return .shareRequest
        case (.present, .missing): return .wakeLate
        case (.present, .protected): return .mapHeld
        case (.removed, _): return .zeroFill  // whatever the kind: the source's bytes must never reappear
        default: return .disagreement
        }
    }
}
