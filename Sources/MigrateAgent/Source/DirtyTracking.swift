import CUffd
import Glibc

/// Finds the pages the source's guest wrote since the last look, for pre-copy.
public protocol DirtyTracking: AnyObject {
    var method: DirtyTrackingMethod { get }
    /// Starts whatever must run on the loop (the synchronous tracker's fault handling). Loop thread.
    func attach(to loop: EventLoop) throws(AgentError)
    /// The pages written since the previous call (or since tracking began), in
    /// order; they are protected again before this returns. Loop thread.
    func collect() throws(AgentError) -> [Int]
    /// Resolves write faults already queued (synchronous tracking); cheap when none. Loop thread.
    func serviceFaults()
    /// Stops tracking; writes run unprotected. Idempotent. Loop thread.
    func stop()
}

/// How dirty pages are found.
public enum DirtyTrackingMethod: String, Codable, Sendable, CaseIterable {
    /// Async write-protect read and re-armed by PAGEMAP_SCAN (Linux 6.7+).
    case pagemapScan = "pagemap-scan"
    /// Synchronous write-protect faults handled on the loop (any kernel with shmem WP).
    case syncWriteProtect = "sync-wp"

    /// The best method the kernel offers, or the one asked for; an error names what is missing.
    public static func select(_ requested: DirtyTrackingMethod?, probe: KernelProbe) throws(AgentError) -> DirtyTrackingMethod {
        let hasWP = probe.features.contains("WP_HUGETLBFS_SHMEM")
        let hasScan = probe.writeProtectAsync && probe.pagemapScan && hasWP
        switch requested {
        case .pagemapScan? where !hasScan:
            throw .unsupported("dirty tracking 'pagemap-scan' needs userfaultfd WP_ASYNC and PAGEMAP_SCAN (Linux 6.7+), "
                + "which kernel \(probe.kernelRelease) lacks; try --dirty-tracking sync-wp")
        case .syncWriteProtect? where !hasWP, nil where !hasWP:
            throw .unsupported("pre-copy needs userfaultfd write-protect on shmem (WP_HUGETLBFS_SHMEM), "
                + "which kernel \(probe.kernelRelease) lacks; use --precopy-rounds 0")
        case let method?:
            return method
        case nil:
            return hasScan ? .pagemapScan : .syncWriteProtect
        }
    }

    /// Creates the tracker over `arena`, protecting every page.
    public func makeTracker(arena: Arena) throws(AgentError) -> any DirtyTracking {
        switch self {
        case .pagemapScan: try PagemapScanTracker(arena: arena)
        case .syncWriteProtect: try SyncWriteProtectTracker(arena: arena)
        }
    }
}

/// The kernel way (Linux 6.7+): the guest view is registered for userfaultfd
/// write-protect in async mode, so writes never block and only clear the
/// PTE's protection; `PAGEMAP_SCAN` then reports the written pages and
/// protects them again in the same call, so no write between the two is lost.
///
/// Threading: one controlling thread (the source's loop). Guest threads only
/// write memory; the kernel does the rest.
public final class PagemapScanTracker: DirtyTracking {
    public let method = DirtyTrackingMethod.pagemapScan

    private let arena: Arena
    private let uffd: Userfaultfd
    private let scanner: PagemapScanner
    private var stopped = false

    /// Registers the guest view for async write-protect and protects every page.
    /// Throws `.unsupported` naming what the kernel lacks.
    public init(arena: Arena) throws(AgentError) {
        self.arena = arena
        do {
            uffd = try Userfaultfd()
            try uffd.negotiate([.wpAsync, .wpHugetlbfsShmem, .wpUnpopulated])
        } catch {
            throw .unsupported("dirty tracking needs userfaultfd WP_ASYNC on shmem (Linux 6.7+): \(error)")
        }
        scanner = try PagemapScanner(purpose: "dirty tracking")
        do {
            try uffd.register(arena.guestBase, length: arena.size, mode: .writeProtect)
            try uffd.writeProtect(arena.guestBase, length: arena.size, protect: true)
        } catch {
            scanner.close()
            throw .unsupported("dirty tracking: \(error)")
        }
    }

    deinit { stop() }

    /// The pages written since the previous call (or since init), in order;
    /// they are write-protected again before this returns.
    public func collect() throws(AgentError) -> [Int] {
        let runs = try scanner.runs(base: arena.guestBase, length: arena.size, pageSize: arena.pageSize,
                                    flags: CUFFD_PM_SCAN_WP_MATCHING | CUFFD_PM_SCAN_CHECK_WPASYNC,
                                    category: CUFFD_PAGE_IS_WRITTEN)
        return runs.flatMap { $0 }
    }

    public func attach(to loop: EventLoop) throws(AgentError) {}

    /// Async write-protect never blocks a writer: nothing to service.
    public func serviceFaults() {}

    /// Stops tracking: the guest view is unregistered (writes run unprotected). Idempotent.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        try? uffd.unregister(arena.guestBase, length: arena.size)
        uffd.close()
        scanner.close()
    }
}
