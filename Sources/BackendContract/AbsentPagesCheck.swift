import MigrateAgent

/// Check 2, absent pages: guest threads read and write pages that were never
/// installed, each thread two pages of its own and both of two shared pages;
/// the resolver installs each page's bytes with `installAbsent`. Every touched
/// page must be installed exactly once however many threads faulted on it (a
/// late fault on an installed page is woken through EEXIST, and reported as
/// already present), no other page may fault, and every thread must read the
/// right bytes.
struct AbsentPagesCheck {
    let context: CheckContext

    /// Page layout: thread t owns pages 2t and 2t+1; two shared pages follow; two pages nobody touches.
    private var sharedPages: [Int] { [2 * context.threads, 2 * context.threads + 1] }
    private var touchedPages: Range<Int> { 0..<(2 * context.threads + 2) }
    private var pageCount: Int { touchedPages.count + 2 }
    private let version: UInt32 = 1

    /// Thread t reads one own page and writes the other (alternating by thread)
    /// and touches both shared pages, with reads and writes mixed across threads.
    private func plan(thread t: Int) -> [GuestTouch] {
        let firstAccess: AccessKind = t % 2 == 0 ? .read : .write
        let otherAccess: AccessKind = t % 2 == 0 ? .write : .read
        let sharedAccess: AccessKind = (t / 2) % 2 == 0 ? .read : .write
        let sharedOther: AccessKind = sharedAccess == .read ? .write : .read
        return [
            GuestTouch(page: sharedPages[t % 2], access: sharedAccess, expected: .version(version)),
            GuestTouch(page: 2 * t, access: firstAccess, expected: .version(version)),
            GuestTouch(page: sharedPages[(t + 1) % 2], access: sharedOther, expected: .version(version)),
            GuestTouch(page: 2 * t + 1, access: otherAccess, expected: .version(version)),
        ]
    }

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        let backend = try context.makeBackend(pages: pageCount, for: .absentPages)
        defer { backend.release() }
        let arena = backend.arena
        let plans = (0..<context.threads).map(plan(thread:))
        var ownAccess: [Int: AccessKind] = [:]
        for (t, plan) in plans.enumerated() {
            for touch in plan where touch.page / 2 == t { ownAccess[touch.page] = touch.access }
        }

        var installs = [Int](repeating: 0, count: pageCount)
        var lateFaults = 0
        var faultsAfterInstall = 0
        let fresh = FreshPage(pageSize: arena.pageSize)
        let guests = context.guests(for: .absentPages, plans: plans, arena: arena)
        let resolver = ResolvingRun(backend: backend, timeoutSeconds: context.timeoutSeconds)
        let record = resolver.run(guests, findings: &findings) { fault, findings in
            guard let page = fault.page, touchedPages.contains(page) else {
                throw AgentError.migrationFailed("a page no thread touched faulted")
            }
            if backend.classify(flags: fault.flags) != .missing {
                findings.add("\(fault.pageText): an absent page classified \(backend.classify(flags: fault.flags)), not missing")
            }
            if let problem = context.flags.absentProblem(fault, access: ownAccess[page]) { findings.add(problem) }
            if installs[page] > 0 { faultsAfterInstall += 1 }
            let outcome = try backend.installAbsent(first: page, count: 1, from: fresh.contents(of: page, version: version))
            installs[page] += outcome.installed
            lateFaults += outcome.alreadyPresent
        }
        guard !record.released else { return "" }
        let faults = record.faults

        for page in touchedPages {
            findings.expect(installs[page] == 1, "page \(page) installed \(installs[page]) times, expected once")
            if let problem = arena.ioViewProblem(page: page, expected: .version(version)) { findings.add(problem) }
        }
        findings.expect(lateFaults == faultsAfterInstall,
                        "\(counted(faultsAfterInstall, "fault")) read after its page was installed, but installAbsent "
                            + "reported \(lateFaults) already present (a late fault must be woken through EEXIST, never installed again)")
        let faultedPages = Set(faults.compactMap(\.page))
        findings.expect(faultedPages == Set(touchedPages),
                        "pages that faulted \(faultedPages.sorted()) are not the touched pages \(Array(touchedPages))")
        for page in ownAccess.keys.sorted() {
            let count = faults.filter { $0.page == page }.count
            findings.expect(count == 1, "page \(page), touched by one thread, faulted \(count) times")
        }
        let sharedFaults = faults.filter { sharedPages.contains($0.page ?? -1) }.count
        return "\(touchedPages.count) absent pages installed once each from \(counted(faults.count, "fault")) of "
            + "\(counted(context.threads, "thread")) (\(sharedFaults) on the \(sharedPages.count) shared pages, "
            + "\(counted(lateFaults, "late fault")) woken through EEXIST)"
    }
}
