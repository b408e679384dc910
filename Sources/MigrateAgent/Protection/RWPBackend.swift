import Glibc

/// `rwp`: userfaultfd read-write protection (Linux 7.3, `docs/rwp-abi.md`).
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

    public func register() throws(AgentError) {
        try Self.keepSmallPages(arena)
        try registerGuestView([.missing, .readWriteProtect])
    }

    /// A file THP split drops RWP marks (docs/rwp-abi.md): keep the guest view in small pages.
    /// Every user of RWP on an arena calls this before registering.
    static func keepSmallPages(_ arena: Arena) throws(AgentError) {
        guard madvise(arena.guestBase, arena.size, MADV_NOHUGEPAGE) == 0 else {
            throw .system("madvise(MADV_NOHUGEPAGE) on the guest view: \(String(cString: strerror(errno))); "
                + "without it a huge-page split would silently drop RWP protection")
        }
    }

    /// Whether this backend's userfaultfd negotiated `RWP_ASYNC`, which `releaseAllAsync` needs.
    public var canReleaseAsync: Bool { uffd.features.contains(.rwpAsync) }

    /// Gives up on fresh bytes for every protected page at once: `UFFDIO_SET_MODE` enables
    /// `RWP_ASYNC`, which wakes every thread blocked on an RWP fault, and every later access to
    /// a still-protected page proceeds on the bytes already there (stale data: callers make
    /// this an explicit choice and report it). MISSING faults are unaffected.
    /// Throws `.unsupported` when the kernel did not grant `RWP_ASYNC`.
    public func releaseAllAsync() throws(AgentError) {
        guard canReleaseAsync else {
            throw .unsupported("releasing stale pages needs UFFD_FEATURE_RWP_ASYNC, which this userfaultfd did not get "
                + "(kernel \(KernelProbe.kernelRelease()))")
        }
        do { try uffd.setMode(enable: .rwpAsync) } catch { throw .kernel(error) }
    }

    /// Undoes `releaseAllAsync`: accesses to protected pages trap again (synchronous delivery).
    public func restoreSyncDelivery() throws(AgentError) {
        guard canReleaseAsync else { return }
        do { try uffd.setMode(disable: .rwpAsync) } catch { throw .kernel(error) }
    }

    /// Io-view pages are in the page cache, so a guest access maps them without a trap.
    public func activate(first: Int, count: Int) throws(AgentError) {}
    public var mapsHeldPages: Bool { false }

    /// Precondition: the pages are not protected yet. Populating maps them
    /// first, and populating a page that would fault (absent, or already
    /// protected) would block this thread, the one that resolves faults; so
    /// only pages in the page cache are populated, and absent ones are refused.
    public func protect(first: Int, count: Int) throws(AgentError) {
        var resident = [UInt8](repeating: 0, count: count)
        guard mincore(arena.ioPage(first), count * arena.pageSize, &resident) == 0 else {
            throw .system("mincore on pages \(first)..<\(first + count): \(String(cString: strerror(errno)))")
        }
        if let absent = resident.firstIndex(where: { $0 & 1 == 0 }) {
            throw .migrationFailed("cannot protect page \(first + absent): it was never received")
        }
        let start = arena.guestPage(first)
        let length = count * arena.pageSize
        guard madvise(start, length, 22 /* MADV_POPULATE_READ, Linux 5.14 */) == 0 else {
            throw .system("madvise(MADV_POPULATE_READ) on pages \(first)..<\(first + count): \(String(cString: strerror(errno)))")
        }
        do { try uffd.readWriteProtect(start, length: length, protect: true) } catch { throw .kernel(error) }
    }

    public func refresh(page: Int, fresh: UnsafeRawPointer?) throws(AgentError) {
        if let fresh { copyIntoIOView(page: page, fresh) }
        do {
            try uffd.readWriteProtect(arena.guestPage(page), length: arena.pageSize, protect: false)
        } catch {
            throw .kernel(error)
        }
    }
}
