import Glibc

/// `rwp`: userfaultfd read-write protection (Linux 7.3, `rwp-abi.md`).
/// Protecting arms `UFFDIO_RWPROTECT` on the page's PTE; resolving writes
/// fresh bytes through the io view and unprotects (which wakes the waiters).
/// RWPROTECT only affects present PTEs, so pages are mapped first.
/// Threading: loop thread (see `ProtectionBackend`).
public final class RWPBackend: ProtectionBackend {
    public let kind = BackendKind.rwp
    public let uffd: Userfaultfd
    public let arena: Arena
    public let keepsStaleCopy = true

    init(uffd: Userfaultfd, arena: Arena) {
        self.uffd = uffd
        self.arena = arena
    }

    public func register() throws(AgentError) { try registerGuestView([.missing, .readWriteProtect]) }

    /// Io-view pages are in the page cache, so a guest access maps them without a trap.
    public func activate(first: Int, count: Int) throws(AgentError) {}

    public func protect(first: Int, count: Int) throws(AgentError) {
        // Populate the PTEs first (only present pages: an absent one would fault to us).
        let start = arena.guestPage(first)
        let length = count * arena.pageSize
        guard madvise(start, length, 22 /* MADV_POPULATE_READ, Linux 5.14 */) == 0 else {
            throw .system("madvise(MADV_POPULATE_READ) on pages \(first)..<\(first + count): \(String(cString: strerror(errno)))")
        }
        do { try uffd.readWriteProtect(start, length: length, protect: true) } catch { throw .system(error.description) }
    }

    public func refresh(page: Int, fresh: UnsafeRawPointer?) throws(AgentError) {
        if let fresh { copyIntoIOView(page: page, fresh) }
        do {
            try uffd.readWriteProtect(arena.guestPage(page), length: arena.pageSize, protect: false)
        } catch {
            throw .system(error.description)
        }
    }
}
