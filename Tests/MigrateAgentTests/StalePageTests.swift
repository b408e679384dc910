import Foundation
import MigrateAgent
import Testing

/// Stale pages, for every backend this kernel offers: pages written through
/// the io view and activated, then protected; every read and write of a
/// protected page blocks until the resolver refreshes it.
@Suite("Backend contract: stale pages")
struct StalePageTests {
    @Test("activated pages are readable without faults", arguments: Kernel.backends)
    func activate(kind: BackendKind) throws {
        let arena = try Arena(size: 8 * Arena.systemPageSize, name: "activate-\(kind)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        fillIOView(arena, pages: 0..<8, version: 1)
        try backend.activate(first: 0, count: 8)
        try backend.activate(first: 2, count: 3)  // again: already mapped pages are fine
        let guest = GuestThread("activate-\(kind)-guest") { [arena] in
            (0..<8).compactMap { touch(arena, page: $0, $0 % 2 == 0 ? .read : .write, expecting: 1) }
        }
        guard let problems = joinGuests([guest], releasing: backend) else { return }
        #expect(problems == [[]])
        #expect(!faultPending(on: backend), "activated pages must not fault")
    }

    @Test("reads and writes of protected pages block until refresh delivers fresh bytes", arguments: Kernel.backends)
    func protectAndRefresh(kind: BackendKind) throws {
        let arena = try Arena(size: 8 * Arena.systemPageSize, name: "stale-\(kind)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        fillIOView(arena, pages: 0..<8, version: 1)
        try backend.activate(first: 0, count: 8)
        // The guest has run on every page (its PTEs are there) before they go stale.
        let warm = GuestThread("stale-\(kind)-warm") { [arena] in
            (0..<8).compactMap { touch(arena, page: $0, .read, expecting: 1) }
        }
        guard let warmed = joinGuests([warm], releasing: backend) else { return }
        #expect(warmed == [[]])

        let protected = 2..<6
        try backend.protect(first: protected.lowerBound, count: protected.count)

        let refreshed = Locked([Int: Int]())
        let buffer = PageBuffer(pageSize: arena.pageSize)
        let resolver = FaultResolver(backend: backend) { fault in
            guard let page = fault.page else { throw AgentError.system("fault outside the arena") }
            if refreshed.withLock({ $0[page, default: 0] }) > 0 {
                // Read after its page was refreshed: its thread may still wait.
                try backend.uffd.wake(arena.guestPage(page), length: arena.pageSize)
                return
            }
            try backend.refresh(page: page, fresh: buffer.filled(page: page, version: 2))
            refreshed.withLock { $0[page, default: 0] += 1 }
        }

        // Readers and writers on every protected page (page 3 by two threads at once),
        // and a thread on unprotected pages that must run through without a fault.
        let plans: [[(Int, Access, UInt32)]] = [
            [(2, .read, 2), (3, .read, 2)],
            [(3, .read, 2)],
            [(4, .write, 2)],
            [(5, .write, 2), (2, .write, 2)],
            [(0, .read, 1), (1, .write, 1), (6, .read, 1), (7, .write, 1)],
        ]
        let gate = StartGate(count: plans.count)
        let threads = plans.enumerated().map { t, plan in
            GuestThread("stale-\(kind)-guest-\(t)") { [arena] in
                gate.wait()
                return plan.compactMap { page, access, version in touch(arena, page: page, access, expecting: version) }
            }
        }
        gate.open()
        let results = joinGuests(threads, releasing: backend)
        #expect(resolver.stop(), "the resolver thread did not stop")
        guard let results else { return }

        #expect(results.flatMap { $0 } == [], "guests get the fresh bytes on protected pages, the old ones elsewhere")
        #expect(resolver.problems == [])
        let faults = resolver.faults
        #expect(Set(faults.compactMap(\.page)) == Set(protected), "only protected pages fault")
        let expectedKind = protectedFaultKind(kind)
        for fault in faults {
            #expect(backend.classify(flags: fault.flags) == expectedKind,
                    "page \(fault.page ?? -1) flags 0x\(String(fault.flags, radix: 16)) on \(kind)")
        }
        // Page 4 is only written: its fault is a write, so writes trap as well as reads.
        #expect(faults.filter { $0.page == 4 }.allSatisfy { $0.isWrite })
        #expect(faults.contains { $0.page == 4 })
        #expect(faults.filter { $0.page == 3 }.allSatisfy { !$0.isWrite })
        let counts = refreshed.withLock { $0 }
        for page in protected { #expect(counts[page] == 1, "page \(page) refreshed \(counts[page] ?? 0) times") }
        for page in protected { #expect(ioViewProblem(arena, page: page, version: 2) == nil) }
        for page in [0, 1, 6, 7] { #expect(ioViewProblem(arena, page: page, version: 1) == nil) }
    }

    @Test("unchanged: refresh(fresh: nil) maps the held copy, or throws where none is kept", arguments: Kernel.backends)
    func unchanged(kind: BackendKind) throws {
        let arena = try Arena(size: 4 * Arena.systemPageSize, name: "unchanged-\(kind)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        #expect(backend.keepsStaleCopy == (kind != .missing))
        fillIOView(arena, pages: 0..<4, version: 1)
        try backend.activate(first: 0, count: 4)
        try backend.protect(first: 1, count: 2)

        let outcomes = Locked([String]())
        let buffer = PageBuffer(pageSize: arena.pageSize)
        let resolver = FaultResolver(backend: backend) { fault in
            guard let page = fault.page else { throw AgentError.system("fault outside the arena") }
            do {
                try backend.refresh(page: page, fresh: nil)
                outcomes.withLock { $0.append("page \(page): unchanged") }
            } catch AgentError.migrationFailed(let message) {
                outcomes.withLock { $0.append("page \(page): threw migrationFailed: \(message)") }
                // The only way on for a backend without a held copy: send the bytes.
                try backend.refresh(page: page, fresh: buffer.filled(page: page, version: 2))
            }
        }
        let expected: UInt32 = backend.keepsStaleCopy ? 1 : 2
        let guest = GuestThread("unchanged-\(kind)-guest") { [arena] in
            [touch(arena, page: 1, .read, expecting: expected), touch(arena, page: 2, .write, expecting: expected)]
                .compactMap { $0 }
        }
        let results = joinGuests([guest], releasing: backend)
        #expect(resolver.stop(), "the resolver thread did not stop")
        guard let results else { return }
        #expect(results == [[]])
        #expect(resolver.problems == [])
        let log = outcomes.withLock { $0 }
        #expect(log.count == 2, "\(log)")
        if backend.keepsStaleCopy {
            #expect(log.allSatisfy { $0.hasSuffix("unchanged") }, "\(log)")
            // No transfer: the io view still holds the old version.
            for page in 1...2 { #expect(ioViewProblem(arena, page: page, version: 1) == nil) }
        } else {
            #expect(log.allSatisfy { $0.contains("threw migrationFailed") && $0.contains("unchanged") }, "\(log)")
        }
    }
}
