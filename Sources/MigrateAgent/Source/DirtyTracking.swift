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
    private var pagemap: Int32
    private var regions: UnsafeMutablePointer<cuffd_page_region>
    private static let regionCapacity = 1024

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
        pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { throw .unsupported("dirty tracking needs /proc/self/pagemap: \(String(cString: strerror(errno)))") }
        regions = .allocate(capacity: Self.regionCapacity)
        do {
            try uffd.register(arena.guestBase, length: arena.size, mode: .writeProtect)
            try uffd.writeProtect(arena.guestBase, length: arena.size, protect: true)
        } catch {
            close(pagemap)
            regions.deallocate()
            throw .unsupported("dirty tracking: \(error)")
        }
    }

    deinit {
        stop()
        regions.deallocate()
    }

    /// The pages written since the previous call (or since init), in order;
    /// they are write-protected again before this returns.
    public func collect() throws(AgentError) -> [Int] {
        var dirty: [Int] = []
        let end = UInt64(UInt(bitPattern: arena.guestBase)) + UInt64(arena.size)
        var start = UInt64(UInt(bitPattern: arena.guestBase))
        let base = start
        while start < end {
            var walkEnd: UInt64 = 0
            let n = cuffd_pagemap_scan(
                pagemap, UnsafeMutableRawPointer(bitPattern: UInt(start)), UnsafeMutableRawPointer(bitPattern: UInt(end)),
                CUFFD_PM_SCAN_WP_MATCHING | CUFFD_PM_SCAN_CHECK_WPASYNC, regions, UInt64(Self.regionCapacity), 0,
                CUFFD_PAGE_IS_WRITTEN, CUFFD_PAGE_IS_WRITTEN, &walkEnd)
            guard n >= 0 else { throw .system("PAGEMAP_SCAN: \(String(cString: strerror(-n)))") }
            for i in 0..<Int(n) {
                let first = Int((regions[i].start - base) / UInt64(arena.pageSize))
                let last = Int((regions[i].end - base) / UInt64(arena.pageSize))
                dirty.append(contentsOf: first..<last)
            }
            guard walkEnd > start else { break }
            start = walkEnd
        }
        return dirty
    }

    public func attach(to loop: EventLoop) throws(AgentError) {}

    /// Async write-protect never blocks a writer: nothing to service.
    public func serviceFaults() {}

    /// Stops tracking: the guest view is unregistered (writes run unprotected). Idempotent.
    public func stop() {
        guard pagemap >= 0 else { return }
        try? uffd.unregister(arena.guestBase, length: arena.size)
        uffd.close()
        close(pagemap)
        pagemap = -1
    }
}
