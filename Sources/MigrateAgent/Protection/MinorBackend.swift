import Glibc

/// `minor`: shmem minor faults (Linux 5.13+). Protecting zaps the guest view's
/// PTEs (`MADV_DONTNEED`) while the page stays in the page cache, so the next
/// access faults as MINOR; resolving writes fresh bytes through the io view
/// and maps the page with `UFFDIO_CONTINUE`.
/// Threading: loop thread (see `ProtectionBackend`).
public final class MinorBackend: ProtectionBackend {
    public let kind = BackendKind.minor
    public let uffd: Userfaultfd
    public let arena: Arena
    public let keepsStaleCopy = true
    public let mapsHeldPages = true

    init(uffd: Userfaultfd, arena: Arena) {
        self.uffd = uffd
        self.arena = arena
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

    private func mapExisting(first: Int, count: Int) throws(AgentError) {
        var done = 0
        while done < count {
            let result = uffd.continue(arena.guestPage(first + done), length: (count - done) * arena.pageSize)
            done += max(0, Int(result.bytes) / arena.pageSize)
            if result.succeeded { return }
            if result.alreadyPresent {
                // Already mapped (a COPY mapped it meanwhile): wake whoever waited on it.
                do { try uffd.wake(arena.guestPage(first + done), length: arena.pageSize) } catch { throw .kernel(error) }
                done += 1
            } else if result.errno != EAGAIN {
                throw .kernel(UffdError("UFFDIO_CONTINUE of page \(first + done)", code: result.errno))
            }
        }
    }
}
