import Foundation
import MigrateAgent
import Testing

/// Absent pages, for every backend this kernel offers: guest threads fault,
/// the test's resolver installs the right bytes with `installAbsent`.
@Suite("Backend contract: absent pages")
struct AbsentPageTests {
    /// What the resolver did, per page.
    struct Ledger {
        var installed: [Int: Int] = [:]
        var alreadyPresent: [Int: Int] = [:]
        var duplicateFaults = 0
    }

    @Test("concurrent faults on distinct and shared absent pages: right bytes, one install per page",
          arguments: Kernel.backends)
    func concurrentFaults(kind: BackendKind) throws {
        let threadCount = 4
        let sharedPages = [2 * threadCount, 2 * threadCount + 1]  // every thread touches both
        let touchedPages = Set(0..<(2 * threadCount + 2))
        let arena = try Arena(size: 16 * Arena.systemPageSize, name: "absent-\(kind)")  // pages 10..<16 stay untouched
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        #expect(backend.kind == kind)

        let ledger = Locked(Ledger())
        let buffer = PageBuffer(pageSize: arena.pageSize)
        let resolver = FaultResolver(backend: backend) { fault in
            guard let page = fault.page else { throw AgentError.system("fault outside the arena") }
            let installedBefore = ledger.withLock { $0.installed[page, default: 0] }
            let outcome = try backend.installAbsent(first: page, count: 1, from: buffer.filled(page: page, version: 1))
            ledger.withLock {
                $0.installed[page, default: 0] += outcome.installed
                $0.alreadyPresent[page, default: 0] += outcome.alreadyPresent
                if installedBefore > 0 { $0.duplicateFaults += 1 }
            }
        }

        // Thread t owns pages 2t and 2t+1 (one read, one written) and reads or writes both shared pages.
        let gate = StartGate(count: threadCount)
        var plans: [[(Int, Access)]] = []
        for t in 0..<threadCount {
            plans.append([
                (2 * t, t % 2 == 0 ? .read : .write),
                (sharedPages[t % 2], (t / 2) % 2 == 0 ? .read : .write),
                (2 * t + 1, t % 2 == 0 ? .write : .read),
                (sharedPages[(t + 1) % 2], (t / 2) % 2 == 0 ? .write : .read),
            ])
        }
        let threads = plans.enumerated().map { t, plan in
            GuestThread("absent-\(kind)-guest-\(t)") { [arena] in
                gate.wait()
                return plan.compactMap { page, access in touch(arena, page: page, access, expecting: 1) }
            }
        }
        gate.open()
        let results = joinGuests(threads, releasing: backend)
        #expect(resolver.stop(), "the resolver thread did not stop")
        guard let results else { return }

        #expect(results.flatMap { $0 } == [], "every guest thread reads the bytes the resolver installed")
        #expect(resolver.problems == [])
        let faults = resolver.faults
        let ledgerNow = ledger.withLock { $0 }
        #expect(faults.allSatisfy { $0.page != nil })
        #expect(Set(faults.compactMap(\.page)) == touchedPages, "every touched page faulted, no other page did")
        #expect(faults.allSatisfy { backend.classify(flags: $0.flags) == .missing }, "absent pages fault as missing")
        for page in touchedPages.sorted() {
            #expect(ledgerNow.installed[page] == 1, "page \(page) installed \(ledgerNow.installed[page] ?? 0) times")
        }
        #expect(ledgerNow.installed.values.reduce(0, +) == touchedPages.count)
        #expect(ledgerNow.alreadyPresent.values.reduce(0, +) == ledgerNow.duplicateFaults,
                "a fault read after its page was installed is woken through EEXIST, never installed again")
        // Pages a single thread owns fault once, with the access type the thread used.
        for (t, plan) in plans.enumerated() {
            for (page, access) in plan where !sharedPages.contains(page) {
                let pageFaults = faults.filter { $0.page == page }
                #expect(pageFaults.count == 1, "thread \(t) page \(page): \(pageFaults.count) faults")
                #expect(pageFaults.allSatisfy { $0.isWrite == (access == .write) },
                        "thread \(t) page \(page): a \(access) fault must \(access == .write ? "" : "not ")carry WRITE")
            }
        }
        print("MigrateAgentTests: absent(\(kind)): \(touchedPages.count) pages installed once each, "
            + "\(faults.count) faults read, \(ledgerNow.duplicateFaults) late duplicates woken")
    }

    @Test("installAbsent on a page already there reports alreadyPresent and does not throw",
          arguments: Kernel.backends)
    func eexistRace(kind: BackendKind) throws {
        let arena = try Arena(size: 8 * Arena.systemPageSize, name: "eexist-\(kind)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        let pageSize = arena.pageSize
        let run = UnsafeMutableRawPointer.allocate(byteCount: 5 * pageSize, alignment: pageSize)
        defer { run.deallocate() }
        for i in 0..<5 { PageContent.fill(run + i * pageSize, index: i, version: 1, pageSize: pageSize) }
        let other = PageBuffer(pageSize: pageSize)

        let first = try backend.installAbsent(first: 1, count: 1, from: run + pageSize)
        #expect(first.installed == 1)
        #expect(first.alreadyPresent == 0)

        // The same page again (a demand/background race), with other bytes: skipped, not overwritten.
        let again = try backend.installAbsent(first: 1, count: 1, from: other.filled(page: 1, version: 9))
        #expect(again.installed == 0)
        #expect(again.alreadyPresent == 1)
        #expect(ioViewProblem(arena, page: 1, version: 1) == nil)

        // A run with present pages inside it and at its end: the others are installed.
        _ = try backend.installAbsent(first: 4, count: 1, from: run + 4 * pageSize)
        let mixed = try backend.installAbsent(first: 0, count: 5, from: run)
        #expect(mixed.installed == 3)
        #expect(mixed.alreadyPresent == 2)
        // A run starting on a present page.
        let leading = try backend.installAbsent(first: 0, count: 2, from: run)
        #expect(leading.installed == 0)
        #expect(leading.alreadyPresent == 2)
        for page in 0..<5 { #expect(ioViewProblem(arena, page: page, version: 1) == nil) }

        // The guest reads installed pages without a single fault.
        let guest = GuestThread("eexist-\(kind)-guest") { [arena] in
            (0..<5).compactMap { touch(arena, page: $0, .read, expecting: 1) }
        }
        guard let problems = joinGuests([guest], releasing: backend) else { return }
        #expect(problems == [[]])
        #expect(!faultPending(on: backend), "installed pages must not fault")
    }
}
