import MigrateAgent

/// Check 5, the unchanged path: the source says a stale page did not change,
/// so the resolver calls `refresh(page:fresh: nil)`. A backend that keeps the
/// protected page's bytes (`rwp`, `minor`) must resolve the fault from that
/// copy, with no bytes sent; one that dropped them (`missing`) must refuse by
/// throwing, after which the resolver sends the bytes after all.
struct UnchangedPathCheck {
    let context: CheckContext

    private let heldVersion: UInt32 = 1
    /// What the resolver sends when the backend cannot use its held copy.
    private let sentVersion: UInt32 = 2

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        // One protected page per thread (read or written, alternating) and one unprotected page after them.
        let pageCount = context.threads + 1
        let backend = try context.makeBackend(pages: pageCount, for: .unchangedPath)
        defer { backend.release() }
        let arena = backend.arena
        let keepsCopy = context.keepsHeldCopy
        findings.expect(backend.keepsStaleCopy == keepsCopy,
                        "keepsStaleCopy is \(backend.keepsStaleCopy), but \(context.kind.rawValue) \(keepsCopy ? "keeps" : "drops") the stale copy")

        for page in 0..<pageCount { arena.fillThroughIOView(page: page, version: heldVersion) }
        guard try context.activate(0..<pageCount, on: backend, findings: &findings),
              try context.protect(0..<context.threads, on: backend, findings: &findings) else { return "" }

        let seen: UInt32 = keepsCopy ? heldVersion : sentVersion
        let plans = (0..<context.threads).map { t in
            [GuestTouch(page: t, access: t % 2 == 0 ? .read : .write, expected: .version(seen)),
             GuestTouch(page: context.threads, access: .read, expected: .version(heldVersion))]
        }
        var resolved = Set<Int>()
        var refusal: String?
        let fresh = FreshPage(pageSize: arena.pageSize)
        let resolver = ResolvingRun(backend: backend, timeoutSeconds: context.timeoutSeconds)
        let record = resolver.run(context.guests(for: .unchangedPath, plans: plans, arena: arena), findings: &findings) { fault, findings in
            guard let page = fault.page, page < context.threads else {
                throw AgentError.migrationFailed("a page that was not protected faulted")
            }
            guard !resolved.contains(page) else { return }
            resolved.insert(page)
            if keepsCopy {
                try backend.refresh(page: page, fresh: nil)
                return
            }
            do {
                try backend.refresh(page: page, fresh: nil)
                findings.add("page \(page): refresh(fresh: nil) did not throw, but \(context.kind.rawValue) keeps no copy to map")
            } catch {
                refusal = refusal ?? "\(error)"
                if let agentError = error as? AgentError, case .migrationFailed = agentError {} else {
                    findings.add("page \(page): refresh(fresh: nil) threw \(error), expected AgentError.migrationFailed")
                }
            }
            // The only way on without a held copy: send the bytes.
            try backend.refresh(page: page, fresh: fresh.contents(of: page, version: sentVersion))
        }
        guard !record.released else { return "" }

        findings.expect(resolved == Set(0..<context.threads),
                        "protected pages that faulted: \(resolved.sorted()), expected 0..<\(context.threads)")
        if keepsCopy {
            // Nothing was sent: the io view still holds the old bytes.
            for page in 0..<pageCount {
                if let problem = arena.ioViewProblem(page: page, expected: .version(heldVersion)) { findings.add(problem) }
            }
            return "\(resolved.count) protected pages resolved from the held copy by refresh(fresh: nil), no bytes sent"
        }
        findings.expect(refusal != nil, "refresh(fresh: nil) never threw")
        return "refresh(fresh: nil) threw on all \(resolved.count) protected pages as it must without a held copy "
            + "(\(refusal ?? "")); resolved by sending the bytes"
    }
}
