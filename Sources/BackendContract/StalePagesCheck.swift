import MigrateAgent

/// Check 4, stale pages: pages written through the io view (pre-copy) and
/// activated, some of them then protected. Guest threads read and write the
/// protected pages (each thread one page of its own, all threads one shared
/// page they read and one they write) and block; the resolver checks each
/// fault's kind and flags and refreshes the page with a new version. Threads
/// must see the new bytes on protected pages and the old ones elsewhere, and
/// the unprotected pages they touch must never fault.
struct StalePagesCheck {
    let context: CheckContext

    private let oldVersion: UInt32 = 1
    private let newVersion: UInt32 = 2

    /// Page layout for n threads: [0, n) unprotected; [n, 2n) protected, one per
    /// thread; 2n protected, read by all; 2n+1 protected, written by all;
    /// [2n+2, 3n+2) unprotected.
    private var n: Int { context.threads }
    private var protectedPages: Range<Int> { n..<(2 * n + 2) }
    private var sharedRead: Int { 2 * n }
    private var sharedWrite: Int { 2 * n + 1 }
    private var pageCount: Int { 3 * n + 2 }

    private func plan(thread t: Int) -> [GuestTouch] {
        let own: AccessKind = t % 2 == 0 ? .read : .write
        let other: AccessKind = own == .read ? .write : .read
        return [
            GuestTouch(page: sharedRead, access: .read, expected: .version(newVersion)),
            GuestTouch(page: sharedWrite, access: .write, expected: .version(newVersion)),
            GuestTouch(page: n + t, access: own, expected: .version(newVersion)),
            GuestTouch(page: t, access: other, expected: .version(oldVersion)),
            GuestTouch(page: 2 * n + 2 + t, access: own, expected: .version(oldVersion)),
        ]
    }

    /// The one kind of access each protected page gets (all of its threads agree).
    private func access(toProtected page: Int) -> AccessKind {
        switch page {
        case sharedRead: .read
        case sharedWrite: .write
        default: (page - n) % 2 == 0 ? .read : .write
        }
    }

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        let backend = try context.makeBackend(pages: pageCount, for: .stalePages)
        defer { backend.release() }
        let arena = backend.arena
        let resolver = ResolvingRun(backend: backend, timeoutSeconds: context.timeoutSeconds)

        // Pre-copy: every page arrives through the io view, then the guest may map them.
        for page in 0..<pageCount { arena.fillThroughIOView(page: page, version: oldVersion) }
        guard try context.activate(0..<pageCount, on: backend, findings: &findings) else { return "" }
        // Activating pages that are already mapped again must be harmless.
        guard try context.activate(1..<min(4, pageCount), on: backend, findings: &findings) else { return "" }

        // The guest runs on every other page before switch-over: activated pages must not
        // fault, and the others stay unmapped in the guest view, so `protect` has to cover
        // pages without a mapping as well as mapped ones (RWP protects only present PTEs).
        let warmPlan = stride(from: 0, to: pageCount, by: 2).map {
            GuestTouch(page: $0, access: .read, expected: .version(oldVersion))
        }
        let warm = context.guests(for: .stalePages, plans: [warmPlan], arena: arena)
        let warmRecord = resolver.run(warm, findings: &findings) { _, _ in
            throw AgentError.migrationFailed("an activated page faulted before anything was protected")
        }
        guard !warmRecord.released else { return "" }

        guard try context.protect(protectedPages, on: backend, findings: &findings) else { return "" }

        var refreshes = [Int: Int]()
        var duplicateFaults = 0
        let fresh = FreshPage(pageSize: arena.pageSize)
        let guests = context.guests(for: .stalePages, plans: (0..<n).map(plan(thread:)), arena: arena)
        let record = resolver.run(guests, findings: &findings) { fault, findings in
            guard let page = fault.page, protectedPages.contains(page) else {
                throw AgentError.migrationFailed("a page that was not protected faulted")
            }
            let kind = backend.classify(flags: fault.flags)
            findings.expect(kind == context.flags.protectedKind,
                            "\(fault.pageText): classify(\(fault.flagsText)) is \(kind), expected \(context.flags.protectedKind)")
            if let problem = context.flags.protectedProblem(fault, access: access(toProtected: page)) { findings.add(problem) }
            if refreshes[page, default: 0] > 0 {
                // Read after its page was refreshed: the refresh already woke its thread. Waking again is harmless.
                duplicateFaults += 1
                try backend.uffd.wake(arena.guestPage(page), length: arena.pageSize)
                return
            }
            try backend.refresh(page: page, fresh: fresh.contents(of: page, version: newVersion))
            refreshes[page, default: 0] += 1
        }
        guard !record.released else { return "" }

        let faults = record.faults
        let faultedPages = Set(faults.compactMap(\.page))
        findings.expect(faultedPages == Set(protectedPages),
                        "pages that faulted \(faultedPages.sorted()) are not the protected pages \(Array(protectedPages))")
        for page in protectedPages {
            findings.expect(refreshes[page] == 1, "page \(page) refreshed \(refreshes[page] ?? 0) times, expected once")
        }
        for page in 0..<pageCount {
            let expected: ExpectedContent = .version(protectedPages.contains(page) ? newVersion : oldVersion)
            if let problem = arena.ioViewProblem(page: page, expected: expected) { findings.add(problem) }
        }
        let writes = faults.filter { $0.isWrite }.count
        let flagsSeen = Set(faults.map { $0.flagsText }).sorted().joined(separator: ", ")
        return "\(protectedPages.count) protected pages faulted \(faults.count) times "
            + "(\(faults.count - writes) reads, \(writes) writes; flags \(flagsSeen)) "
            + "and were refreshed once each (\(counted(duplicateFaults, "late fault")) woken); "
            + "\(pageCount - protectedPages.count) unprotected pages touched without a fault"
    }
}
