import Dispatch
import MigrateAgent

/// Check 7, async release (`rwp` only): `RWPBackend.releaseAllAsync`
/// (`UFFDIO_SET_MODE` enabling `RWP_ASYNC`) frees threads blocked on
/// synchronous RWP faults, a read and a write, and they see the bytes the
/// page already held; a protected page touched afterwards does not fault at
/// all. `restoreSyncDelivery` (disabling it) makes the next protected page
/// trap again, and `refresh` resolves that fault as usual.
struct AsyncReleaseCheck {
    let context: CheckContext

    private let readPage = 0, writePage = 1, untouchedPage = 2, syncPage = 3
    private let oldVersion: UInt32 = 1, newVersion: UInt32 = 2
    private static let blockedProof = DispatchTimeInterval.milliseconds(100)

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        let made = try context.makeBackend(pages: 4, for: .asyncRelease)
        defer { made.release() }
        guard let backend = made as? RWPBackend else {
            throw .migrationFailed("async release applies to the rwp backend only, not \(made.kind.rawValue)")
        }
        guard backend.canReleaseAsync else {
            throw .unsupported("the rwp backend's userfaultfd did not get RWP_ASYNC, so releaseAllAsync cannot work")
        }
        let arena = backend.arena
        for page in 0..<4 { arena.fillThroughIOView(page: page, version: oldVersion) }
        guard try context.activate(0..<4, on: backend, findings: &findings),
              try context.protect(0..<3, on: backend, findings: &findings) else { return "" }

        // Synchronous delivery first: a read and a write block with RWP faults.
        let reader = FaultReader(backend: backend)
        let blocked = context.guests(for: .asyncRelease, plans: [
            [GuestTouch(page: readPage, access: .read, expected: .version(oldVersion))],
            [GuestTouch(page: writePage, access: .write, expected: .version(oldVersion))],
        ], arena: arena)
        blocked.start()
        var faults: [PageFault] = []
        let faultDeadline = context.deadline()
        while Set(faults.compactMap(\.page)) != [readPage, writePage] && DispatchTime.now() < faultDeadline {
            faults += try reader.read(until: faultDeadline)
        }
        findings.expect(Set(faults.compactMap(\.page)) == [readPage, writePage],
                        "expected RWP faults on pages 0 and 1 within \(context.timeoutSeconds) s, got \(faults.map(\.pageText))")
        for fault in faults {
            let access: AccessKind = fault.page == writePage ? .write : .read
            if let problem = context.flags.protectedProblem(fault, access: access) { findings.add(problem) }
        }
        findings.expect(!blocked.wait(until: .now() + Self.blockedProof), "a thread on a protected page did not block")

        // Give up on fresh bytes: both threads proceed on the old ones.
        try backend.releaseAllAsync()
        guard blocked.wait(until: context.deadline()) else {
            findings.add("threads \(blocked.unfinished.joined(separator: ", ")) still blocked \(context.timeoutSeconds) s "
                + "after releaseAllAsync (UFFDIO_SET_MODE enable RWP_ASYNC)")
            return ""
        }
        findings.add(contentsOf: blocked.problems)

        // In async mode a still-protected page is accessed without a fault.
        let later = context.guests(for: .asyncRelease, plans: [
            [GuestTouch(page: untouchedPage, access: .read, expected: .version(oldVersion))],
        ], arena: arena)
        later.start()
        guard later.wait(until: context.deadline()) else {
            findings.add("a read of a protected page blocked after releaseAllAsync")
            return ""
        }
        findings.add(contentsOf: later.problems)

        // Back to synchronous delivery: a newly protected page traps again and refresh resolves it.
        try backend.restoreSyncDelivery()
        guard try context.protect(syncPage..<(syncPage + 1), on: backend, findings: &findings) else { return "" }
        let stray = try reader.readPending().filter { $0.page != readPage && $0.page != writePage }
        findings.expect(stray.isEmpty, "faults in async mode: \(stray.map(\.pageText))")
        let fresh = FreshPage(pageSize: arena.pageSize)
        let sync = context.guests(for: .asyncRelease, plans: [
            [GuestTouch(page: syncPage, access: .read, expected: .version(newVersion))],
        ], arena: arena)
        var syncFaults = 0
        let record = ResolvingRun(backend: backend, timeoutSeconds: context.timeoutSeconds).run(sync, findings: &findings) { fault, findings in
            guard fault.page == syncPage else { return }  // a late duplicate of the released faults
            if let problem = context.flags.protectedProblem(fault, access: .read) { findings.add(problem) }
            if syncFaults == 0 { try backend.refresh(page: syncPage, fresh: fresh.contents(of: syncPage, version: newVersion)) }
            syncFaults += 1
        }
        guard !record.released else { return "" }
        findings.expect(syncFaults >= 1, "after restoreSyncDelivery a protected page was read without an RWP fault")
        return "releaseAllAsync freed a blocked read and write (flags \(Set(faults.map(\.flagsText)).sorted().joined(separator: ", "))) "
            + "on the old bytes, a later access went through without a fault, and after restoreSyncDelivery "
            + "a protected read trapped again and was refreshed"
    }
}
