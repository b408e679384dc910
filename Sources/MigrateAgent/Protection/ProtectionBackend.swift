import CUffd
import Glibc

/// What a page-fault message means, from its flags.
public enum FaultKind: String, Sendable {
    /// No page at all: resolve with `UFFDIO_COPY`.
    case missing
    /// A page that is there but protected (MINOR or RWP fault): refresh and unprotect.
    case protected
}

/// The outcome of installing a run of absent pages.
public struct InstallOutcome: Sendable {
    /// Pages this call installed.
    public var installed = 0
    /// Pages that were already there (`EEXIST`: a demand/background race), woken instead.
    public var alreadyPresent = 0
    /// The kernel answered `EAGAIN` (an event waits to be read): the rest was not done.
    public var interrupted = false
}

/// One page-protection backend (docs/architecture.md, "Protection backends").
/// Nothing outside the backend knows which one runs.
///
/// Threading: every method runs on the destination's loop thread, except
/// `release`, which may run on any thread to free stuck faults at shutdown.
public protocol ProtectionBackend: PageResolver {
    var kind: BackendKind { get }
    var arena: Arena { get }
    /// Registers the guest view with the mode this backend needs.
    func register() throws(AgentError)
    /// Makes pages that were written through the io view (pre-copy) accessible to the guest.
    func activate(first: Int, count: Int) throws(AgentError)
    /// Whether `activate` does anything: pre-copied pages then trap until mapped.
    var mapsHeldPages: Bool { get }
    /// Protects present, not yet protected pages so that the guest's next read or write traps.
    func protect(first: Int, count: Int) throws(AgentError)
}

extension ProtectionBackend {
    public var space: any GuestPageSpace { arena }

    /// Releases every fault: unregisters the arena (which wakes its waiters), or,
    /// should that fail, wakes the whole range. Safe from any thread; idempotent.
    /// Closing the userfaultfd afterwards makes the release certain.
    public func release() {
        do { try uffd.unregister(arena.guestBase, length: arena.size) } catch {
            try? uffd.wake(arena.guestBase, length: arena.size)  // the last resort has no fallback left
        }
    }

    func copyIntoIOView(page: Int, _ fresh: UnsafeRawPointer) {
        arena.ioPage(page).copyMemory(from: fresh, byteCount: arena.pageSize)
    }
}

/// Creates the backend of `kind` over `arena`, with a fresh userfaultfd negotiated for it.
/// `preallocated`: the arena's pages were all allocated (`Arena.populateIOView`);
/// only the minor backend uses that (see `MinorBackend`).
public func makeBackend(_ kind: BackendKind, arena: Arena, preallocated: Bool = false) throws(AgentError) -> any ProtectionBackend {
    let uffd: Userfaultfd
    do {
        var features: UffdFeatures = [.missingShmem]
        switch kind {
        case .rwp: features.insert(.rwp)
        case .minor: features.insert(.minorShmem)
        case .missing: break
        }
        // RWP_ASYNC only where the kernel offers it: it lets RWPBackend.releaseAllAsync give up on stale pages.
        uffd = try Userfaultfd.negotiated(features, optional: kind == .rwp ? [.rwpAsync] : [])
        if uffd.features.contains(.rwpAsync) {
            try uffd.setMode(disable: .rwpAsync)  // negotiated RWP_ASYNC starts async: the destination traps synchronously
        }
    } catch {
        throw .kernel(error)
    }
    let backend: any ProtectionBackend = switch kind {
    case .rwp: RWPBackend(uffd: uffd, arena: arena)
    case .minor: MinorBackend(uffd: uffd, arena: arena, preallocated: preallocated)
    case .missing: MissingBackend(uffd: uffd, arena: arena)
    }
    try backend.register()
    return backend
}

extension ProtectionBackend {
    func registerGuestView(_ mode: UffdRegisterMode) throws(AgentError) {
        do {
            try uffd.register(arena.guestBase, length: arena.size, mode: mode)
        } catch {
            throw .kernel(error)
        }
    }
}
