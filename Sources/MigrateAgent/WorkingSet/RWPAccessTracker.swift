import CUffd
import Dispatch
import Glibc

/// Access tracking the way the RWP series meant it (Linux 7.3, docs/rwp-abi.md):
/// the guest view is registered `MODE_RWP` on a userfaultfd negotiated with
/// `RWP | RWP_ASYNC` and protected once. A guest access never blocks: the
/// kernel clears the page's RWP mark and sends nothing. `scan` lists the pages
/// whose mark is clear with `PAGEMAP_SCAN`/`PAGE_IS_ACCESSED`, then protects
/// each returned run again with `UFFDIO_RWPROTECT(MODE_RWP)`. An access after
/// the walk passed its page clears a mark the scan did not see, so it shows
/// in the next scan: nothing between two scans is lost.
///
/// RWP protects only present PTEs, so the guest view is populated first; the
/// arena must be fully populated (every page in the memfd) before tracking.
///
/// Threading: one controlling thread (see `AccessTracking`). Guest threads only
/// touch memory; the kernel does the rest.
public final class RWPAccessTracker: AccessTracking {
    public let method = AccessTrackingMethod.rwpAsync

    private let arena: Arena
    private let uffd: Userfaultfd
    private let scanner: PagemapScanner
    private var stopped = false
    public private(set) var costs = AccessTrackingCosts()

    /// Registers the guest view for async RWP and protects every page. Throws
    /// `.unsupported` naming what the kernel lacks.
    public init(arena: Arena) throws(AgentError) {
        self.arena = arena
        do {
            uffd = try Userfaultfd()
            try uffd.negotiate([.rwp, .rwpAsync])
        } catch {
            throw .unsupported("access tracking 'rwp-async' needs userfaultfd RWP and RWP_ASYNC (Linux 7.3): \(error)")
        }
        scanner = try PagemapScanner(purpose: "access tracking")
        do {
            try Self.protectAll(arena, uffd)
        } catch {
            try? uffd.unregister(arena.guestBase, length: arena.size)
            uffd.close()
            scanner.close()
            throw error
        }
        costs.pagesSampledPerInterval = arena.pageCount
    }

    deinit { stop() }

    private static func protectAll(_ arena: Arena, _ uffd: Userfaultfd) throws(AgentError) {
        try RWPBackend.keepSmallPages(arena)
        // Map every page first: RWPROTECT skips absent PTEs, and a page populated after
        // protection would look accessed. Nothing is registered yet, so this cannot trap.
        guard madvise(arena.guestBase, arena.size, 22 /* MADV_POPULATE_READ, Linux 5.14 */) == 0 else {
            throw .system("madvise(MADV_POPULATE_READ) on the guest view: \(String(cString: strerror(errno)))")
        }
        do {
            try uffd.register(arena.guestBase, length: arena.size, mode: .readWriteProtect)
            try uffd.readWriteProtect(arena.guestBase, length: arena.size, protect: true)
        } catch {
            throw .kernel(error)
        }
    }

    public func scan() throws(AgentError) -> [Int] {
        guard !stopped else { throw .invalidArgument("scan() after stop()") }
        let start = DispatchTime.now().uptimeNanoseconds
        let runs = try scanner.runs(base: arena.guestBase, length: arena.size, pageSize: arena.pageSize,
                                    flags: 0, category: CUFFD_PAGE_IS_ACCESSED)
        for run in runs {
            do {
                try uffd.readWriteProtect(arena.guestPage(run.lowerBound), length: run.count * arena.pageSize, protect: true)
            } catch {
                throw .kernel(error)
            }
        }
        costs.scans += 1
        costs.scanNanos += DispatchTime.now().uptimeNanoseconds - start
        return runs.flatMap { $0 }
    }

    /// Unregisters the guest view (every PTE loses its mark; nothing can be blocked in
    /// async mode, and unregistering would release it anyway). Idempotent.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        try? uffd.unregister(arena.guestBase, length: arena.size)
        uffd.close()
        scanner.close()
    }
}
