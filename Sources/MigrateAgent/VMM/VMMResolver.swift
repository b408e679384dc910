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

    /// One page of zeros to copy from where `UFFDIO_ZEROPAGE` does not apply
    /// (hugetlbfs pages); allocated once.
    private let zeros: UnsafeMutableRawPointer?

    init(uffd: Userfaultfd, regions: VMMRegions) {
        self.uffd = uffd
        self.regions = regions
        if regions.pageSize > Arena.systemPageSize {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: regions.pageSize, alignment: 4096)
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: regions.pageSize)
            zeros = buffer
        } else {
            zeros = nil
        }
    }

    deinit { zeros?.deallocate() }

    /// Zero pages: `UFFDIO_ZEROPAGE` on small pages, a copy of a zero page on huge ones.
    func installZero(first: Int, count: Int) throws(AgentError) -> InstallOutcome {
        guard let zeros else { return try zeroAbsent(first: first, count: count) }
        var outcome = InstallOutcome()
        for page in first..<(first + count) {
            let one = try install(first: page, count: 1) { (address, length, _) in
                uffd.copy(to: address, from: zeros, length: length)
            }
            outcome.installed += one.installed
            outcome.alreadyPresent += one.alreadyPresent
            if one.interrupted {
                outcome.interrupted = true
                break
            }
        }
        return outcome
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
