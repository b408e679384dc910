/// `missing`: any userfaultfd. Protecting drops the page (hole punch in the
/// memfd), so a stale page faults as MISSING and every resolution is `UFFDIO_COPY`.
/// Threading: loop thread (see `ProtectionBackend`).
public final class MissingBackend: ProtectionBackend {
    public let kind = BackendKind.missing
    public let uffd: Userfaultfd
    public let arena: Arena
    public let keepsStaleCopy = false

    init(uffd: Userfaultfd, arena: Arena) {
        self.uffd = uffd
        self.arena = arena
    }

    public func register() throws(AgentError) { try registerGuestView(.missing) }

    /// Pages written through the io view are in the page cache: the guest maps them without a fault.
    public func activate(first: Int, count: Int) throws(AgentError) {}
    public var mapsHeldPages: Bool { false }

    public func protect(first: Int, count: Int) throws(AgentError) {
        try arena.punchHole(page: first, count: count)
    }

    public func refresh(page: Int, fresh: UnsafeRawPointer?) throws(AgentError) {
        guard let fresh else {
            throw .migrationFailed("page \(page): the missing backend dropped its copy, so 'unchanged' cannot resolve it")
        }
        _ = try installAbsent(first: page, count: 1, from: fresh)
    }
}
