import Glibc

/// Resolves a VMM's faults through the userfaultfd it handed over: the VMM
/// called `UFFDIO_API` and registered its regions MISSING; we only copy (or
/// zero) pages into them. There is no io view and no pre-copy, so no stale pages.
///
/// Threading: the destination's loop thread; `release` and `finish` any thread.
final class VMMResolver: PageResolver, @unchecked Sendable {
    let uffd: Userfaultfd
    let regions: VMMRegions
    var space: any GuestPageSpace { regions }
    let keepsStaleCopy = false

    init(uffd: Userfaultfd, regions: VMMRegions) {
        self.uffd = uffd
        self.regions = regions
    }

    func refresh(page: Int, fresh: UnsafeRawPointer?) throws(AgentError) {
        throw .protocolViolation("a refresh of page \(page): a VMM's memory has no stale pages")
    }

    /// Nothing to release on failure: unregistering the VMM's regions would let its
    /// guest read zeros where its memory is missing. A VMM whose handler failed is
    /// stopped by the agent instead (`--kill-vmm-on-failure`), or stays blocked.
    func release() {}

    /// Every page is in place: the regions are unregistered so that the VM runs on
    /// without us (pages its balloon gives back later read zeros, as on any VM).
    func finish() {
        for range in regions.addressRanges {
            try? uffd.unregister(range.start, length: range.length)  // fails only when the VMM is gone: nothing left to free
        }
    }
}
