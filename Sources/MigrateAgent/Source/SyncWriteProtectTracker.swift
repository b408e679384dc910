import CUffd
import Glibc

/// Dirty tracking where the kernel lacks WP_ASYNC or PAGEMAP_SCAN: the guest
/// view is write-protected with plain (synchronous) userfaultfd WP, so the
/// first write to a protected page blocks the guest thread until the loop
/// records the page as dirty and unprotects it. Costlier for the guest than
/// the async way, which is why it is only the fallback.
///
/// Threading: the fault handling and `collect` both run on the source's loop
/// thread, so re-protecting a page and clearing its dirty mark cannot
/// interleave with a fault on it: a write during `collect` waits in the
/// userfaultfd queue and is recorded afterwards. Guest threads only write.
public final class SyncWriteProtectTracker: DirtyTracking {
    public let method = DirtyTrackingMethod.syncWriteProtect

    private let arena: Arena
    private let uffd: Userfaultfd
    private let dirty: UnsafeMutablePointer<Bool>
    private let messages: UnsafeMutablePointer<uffd_msg>
    private var poller: FdPoller?
    private var stopped = false
    /// The first failure while servicing faults; `collect` throws it. After a
    /// failure the range is unregistered, so no writer stays blocked.
    private var failure: AgentError?

    public init(arena: Arena) throws(AgentError) {
        self.arena = arena
        do {
            uffd = try Userfaultfd()
            try uffd.negotiate([.wpHugetlbfsShmem])
            try uffd.register(arena.guestBase, length: arena.size, mode: .writeProtect)
            try uffd.writeProtect(arena.guestBase, length: arena.size, protect: true)
        } catch {
            throw .unsupported("dirty tracking with synchronous write-protect: \(error)")
        }
        dirty = .allocate(capacity: arena.pageCount)
        dirty.initialize(repeating: false, count: arena.pageCount)
        messages = .allocate(capacity: 64)
    }

    deinit {
        stop()
        dirty.deallocate()
        messages.deallocate()
    }

    public func attach(to loop: EventLoop) throws(AgentError) {
        poller = try FdPoller(loop: loop, fd: uffd.fd) { [unowned self] in serviceFaults() }
    }

    public func serviceFaults() {
        do {
            while !stopped {
                let n = try uffd.readMessages(into: messages, capacity: 64)
                guard n > 0 else { return }
                for i in 0..<n where cuffd_msg_event(messages + i) == CUFFD_EVENT_PAGEFAULT {
                    guard let page = arena.pageIndex(ofGuestAddress: cuffd_msg_fault_address(messages + i)) else { continue }
                    dirty[page] = true
                    try uffd.writeProtect(arena.guestPage(page), length: arena.pageSize, protect: false)  // wakes the writer
                }
            }
        } catch {
            failure = failure ?? .kernel(error)
            stop()  // unregistering releases every blocked writer; the migration fails at `collect`
        }
    }

    public func collect() throws(AgentError) -> [Int] {
        serviceFaults()  // record what is already queued
        if let failure { throw failure }
        var pages: [Int] = []
        var page = 0
        while page < arena.pageCount {
            guard dirty[page] else { page += 1; continue }
            var end = page
            while end < arena.pageCount && dirty[end] { end += 1 }
            do {
                try uffd.writeProtect(arena.guestPage(page), length: (end - page) * arena.pageSize, protect: true)
            } catch {
                throw .kernel(error)
            }
            for p in page..<end { dirty[p] = false }
            pages.append(contentsOf: page..<end)
            page = end
        }
        return pages
    }

    public func stop() {
        guard !stopped else { return }
        stopped = true
        poller?.close()
        poller = nil
        try? uffd.unregister(arena.guestBase, length: arena.size)  // wakes any writer still blocked
        uffd.close()
    }
}
