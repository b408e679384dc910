import Foundation
import MigrateAgent
import Testing

/// `release()` (UFFDIO_UNREGISTER) frees a guest thread blocked on a fault that
/// nobody resolves: the shutdown path, and what every test here falls back on.
@Suite("Backend contract: release")
struct ReleaseTests {
    @Test("a thread blocked on an absent page is released and reads zeros", arguments: Kernel.backends)
    func releaseAbsent(kind: BackendKind) throws {
        let arena = try Arena(size: 2 * Arena.systemPageSize, name: "release-\(kind)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        let guest = GuestThread("release-\(kind)-guest") { [arena] in
            (0..<2).map { PageContent.describe(arena.guestPage($0), pageSize: arena.pageSize) }
        }
        // The thread is blocked once its fault message is there; nobody resolves it.
        let fault = waitForFault(on: backend)
        #expect(fault?.page == 0, "expected a fault on page 0, got \(String(describing: fault))")
        #expect(guest.join(until: .now() + 0.05) == nil, "the guest must wait while the fault is unresolved")
        backend.release()
        backend.release()  // idempotent
        guard let seen = joinGuests([guest], within: 10, releasing: backend) else { return }
        #expect(seen == [["an all-zero page", "an all-zero page"]])
        #expect(!faultPending(on: backend), "no fault after release")
    }

    @Test("a thread blocked on a protected page is released", arguments: Kernel.backends)
    func releaseProtected(kind: BackendKind) throws {
        let arena = try Arena(size: 2 * Arena.systemPageSize, name: "release-stale-\(kind)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        fillIOView(arena, pages: 0..<2, version: 1)
        try backend.activate(first: 0, count: 2)
        try backend.protect(first: 0, count: 1)
        let guest = GuestThread("release-stale-\(kind)-guest") { [arena] in
            PageContent.describe(arena.guestPage(0), pageSize: arena.pageSize)
        }
        let fault = waitForFault(on: backend)
        #expect(fault?.page == 0, "expected a fault on page 0, got \(String(describing: fault))")
        if let fault { #expect(backend.classify(flags: fault.flags) == protectedFaultKind(kind)) }
        backend.release()
        guard let seen = joinGuests([guest], within: 10, releasing: backend) else { return }
        // A backend that keeps the stale copy leaves it in place; the missing backend dropped it.
        #expect(seen == [backend.keepsStaleCopy ? "page 0 version 1" : "an all-zero page"])
    }
}
