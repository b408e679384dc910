import Glibc

/// `minor`: shmem minor faults (Linux 5.13+). Protecting zaps the guest view's
/// PTEs (`MADV_DONTNEED`) while the page stays in the page cache, so the next
/// access faults as MINOR; resolving writes fresh bytes through the io view
/// and maps the page with `UFFDIO_CONTINUE`.
///
/// Preallocated (`destination --preallocate`, the default): every page of the
/// memfd is allocated through the io view before the migration, so every page
/// is in the page cache and a page that never arrived faults as MINOR too. An
/// absent page is then installed by copying its bytes into the io view and
/// mapping the run with one `UFFDIO_CONTINUE`: no page allocation, memcg charge
/// or LRU insertion while the guest runs here (they cost most of a `UFFDIO_COPY`).
/// Its `installAbsent` writes before it maps, so it must only be given pages
/// that are not mapped yet (the tracker's `.absent`, `.requested` or `.arriving`).
///
/// Threading: loop thread (see `ProtectionBackend`); `installAbsent` also on the
/// background installer's thread, for the pages it was handed.
public final class MinorBackend: ProtectionBackend, PreallocatedPages {
    public let kind = BackendKind.minor
    public let uffd: Userfaultfd
    public let arena: Arena
    public let keepsStaleCopy = true
    public let mapsHeldPages = true
    /// Every page was allocated before the migration (see above).
    public let preallocated: Bool

    init(uffd: Userfaultfd, arena: Arena, preallocated: Bool = false) {
        self.uffd = uffd
        self.arena = arena
        self.preallocated = preallocated
    }

    public var absentFaultKind: FaultKind { preallocated ? .protected : .missing }

    public var preallocatedPages: (any PreallocatedPages)? { preallocated ? self : nil }

    public func ioPage(_ page: Int) -> UnsafeMutableRawPointer { arena.ioPage(page) }

    public func installAbsent(first: Int, count: Int, from source: UnsafeRawPointer) throws(AgentError) -> InstallOutcome {
        guard preallocated else { return try copyAbsent(first: first, count: count, from: source) }
        arena.ioPage(first).copyMemory(from: source, byteCount: count * arena.pageSize)
        return try mapExisting(first: first, count: count)
    }

    /// Preallocated memory: maps absent pages whose bytes were already written
    /// through the io view (the background installer's runs), waking their waiters.
    public func mapWritten(first: Int, count: Int) throws(AgentError) -> InstallOutcome {
        precondition(preallocated, "mapWritten needs preallocated memory: elsewhere an unwritten page is a hole")
        return try mapExisting(first: first, count: count)
    }

    public func installZero(first: Int, count: Int) throws(AgentError) -> InstallOutcome {
        guard preallocated else { return try zeroAbsent(first: first, count: count) }
        arena.ioPage(first).initializeMemory(as: UInt8.self, repeating: 0, count: count * arena.pageSize)
        return try mapExisting(first: first, count: count)
    }

    public func register() throws(AgentError) { try registerGuestView([.missing, .minor]) }

    /// Io-view writes leave pages in the page cache but unmapped in the guest
    /// view; on a MINOR range that would trap, so map them now.
    public func activate(first: Int, count: Int) throws(AgentError) {
        try mapExisting(first: first, count: count)
    }

    public func protect(first: Int, count: Int) throws(AgentError) {
        try arena.zapGuestView(page: first, count: count)
    }

    public func refresh(page: Int, fresh: UnsafeRawPointer?) throws(AgentError) {
        if let fresh { copyIntoIOView(page: page, fresh) }
        try mapExisting(first: page, count: 1)
    }

    /// Maps pages that are in the page cache into the guest view, waking their waiters.
    @discardableResult
    private func mapExisting(first: Int, count: Int) throws(AgentError) -> InstallOutcome {
        var outcome = InstallOutcome()
        var done = 0
        while done < count {
            let result = uffd.continue(arena.guestPage(first + done), length: (count - done) * arena.pageSize)
            let pages = max(0, Int(result.bytes) / arena.pageSize)
            done += pages
            outcome.installed += pages
            if result.succeeded { return outcome }
            if result.alreadyPresent {
                // Already mapped (a COPY mapped it meanwhile): wake whoever waited on it.
                do { try uffd.wake(arena.guestPage(first + done), length: arena.pageSize) } catch { throw .kernel(error) }
                outcome.alreadyPresent += 1
                done += 1
            } else if result.errno != EAGAIN {
                throw .kernel(UffdError("UFFDIO_CONTINUE of page \(first + done)", code: result.errno))
            }
        }
        return outcome
    }
}
