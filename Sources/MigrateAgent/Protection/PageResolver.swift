import CUffd
import Glibc

/// What the fault path needs from whatever resolves the guest's faults: a
/// protection backend over our own arena, or a VMM's regions and its
/// userfaultfd. `FaultService` and `PageInstaller` see only this.
///
/// Threading: the destination's loop thread, except `release` (any thread).
public protocol PageResolver: AnyObject, Sendable {
    var uffd: Userfaultfd { get }
    var space: any GuestPageSpace { get }
    /// Whether a protected page keeps its old bytes, so the source can answer "unchanged".
    var keepsStaleCopy: Bool { get }
    /// Resolves a protected page: `fresh` holds new bytes, nil means the held copy is still right.
    func refresh(page: Int, fresh: UnsafeRawPointer?) throws(AgentError)
    /// Classifies a page-fault message's flags.
    func classify(flags: UInt64) -> FaultKind
    /// Releases every blocked fault for good (the migration failed). Any thread; idempotent.
    func release()
    /// The migration succeeded: every page is in place and the guest needs us no more.
    func finish()
    /// Installs zero pages where the guest gave pages back.
    func installZero(first: Int, count: Int) throws(AgentError) -> InstallOutcome
    /// Installs absent pages with these bytes and wakes their waiters (`UFFDIO_COPY`
    /// unless the backend holds every page already). Thread-safe for pages no other
    /// thread installs at the same time.
    func installAbsent(first: Int, count: Int, from source: UnsafeRawPointer) throws(AgentError) -> InstallOutcome
    /// How a fault on a page that never arrived is reported: `.missing`, or
    /// `.protected` when the memory was allocated before the migration.
    var absentFaultKind: FaultKind { get }
    /// The memory, when every page was allocated before the migration: runs can be
    /// written in place and mapped after (nil: pages are installed with their bytes).
    var preallocatedPages: (any PreallocatedPages)? { get }
}

extension PageResolver {
    public func finish() { release() }

    public var absentFaultKind: FaultKind { .missing }

    public var preallocatedPages: (any PreallocatedPages)? { nil }

    /// Installs `count` absent pages starting at `first` with `UFFDIO_COPY`, waking
    /// their waiters, split where the guest's address space is not contiguous. A
    /// page that is already there is skipped and woken: the normal demand/background
    /// race. Stops early, with fewer pages done than asked, when the kernel answers
    /// `EAGAIN`: an event (a VMM's `UFFD_EVENT_REMOVE`) is waiting to be read first.
    public func installAbsent(first: Int, count: Int, from source: UnsafeRawPointer) throws(AgentError) -> InstallOutcome {
        try copyAbsent(first: first, count: count, from: source)
    }

    /// `UFFDIO_COPY` of absent pages (see `installAbsent`).
    func copyAbsent(first: Int, count: Int, from source: UnsafeRawPointer) throws(AgentError) -> InstallOutcome {
        try install(first: first, count: count) { (address, length, offset) in
            uffd.copy(to: address, from: source + offset, length: length)
        }
    }

    /// Installs zero pages (`UFFDIO_ZEROPAGE`): pages the guest gave back
    /// (`UFFD_EVENT_REMOVE`) read zeros, never the source's old bytes.
    public func installZero(first: Int, count: Int) throws(AgentError) -> InstallOutcome {
        try zeroAbsent(first: first, count: count)
    }

    /// `UFFDIO_ZEROPAGE` of absent pages (see `installZero`).
    func zeroAbsent(first: Int, count: Int) throws(AgentError) -> InstallOutcome {
        try install(first: first, count: count) { (address, length, _) in uffd.zeroPage(address, length: length) }
    }

    func install(first: Int, count: Int,
                         _ ioctl: (UnsafeMutableRawPointer, Int, Int) -> Userfaultfd.CopyResult) throws(AgentError) -> InstallOutcome {
        var outcome = InstallOutcome()
        var done = 0
        let pageSize = space.pageSize
        while done < count {
            let run = space.contiguousPages(from: first + done, limit: count - done)
            let result = ioctl(space.guestPage(first + done), run * pageSize, done * pageSize)
            let pages = result.bytes > 0 ? Int(result.bytes) / pageSize : 0
            outcome.installed += pages
            done += pages
            if result.succeeded { continue }
            if result.alreadyPresent {
                // COPY does not wake on EEXIST; a failed wake would leave a guest thread blocked.
                do { try uffd.wake(space.guestPage(first + done), length: pageSize) } catch { throw .kernel(error) }
                outcome.alreadyPresent += 1
                done += 1
            } else if result.errno == EAGAIN {
                // A partial copy also answers EAGAIN (with the bytes done): go on. With
                // nothing done, an event is unread (the mm is changing): stop here.
                if pages > 0 { continue }
                outcome.interrupted = true
                return outcome
            } else {
                throw .kernel(UffdError("UFFDIO_COPY of page \(first + done)", code: result.errno))
            }
        }
        return outcome
    }

    /// Tells a plain missing fault from a fault on a protected page.
    public func classify(flags: UInt64) -> FaultKind {
        flags & (CUFFD_PAGEFAULT_FLAG_MINOR | CUFFD_PAGEFAULT_FLAG_RWP) != 0 ? .protected : .missing
    }
}
