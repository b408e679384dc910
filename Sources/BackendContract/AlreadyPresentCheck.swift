import MigrateAgent
import SyntheticGuest

/// Check 3, already present: a demand fault and the background stream can race
/// to install the same page. `installAbsent` over a page that is already there
/// must report it in `alreadyPresent`, neither throw nor overwrite it, and
/// still install the absent pages of a run that has present pages inside it or
/// at either end. Installed pages then read without a fault.
struct AlreadyPresentCheck {
    let context: CheckContext

    private let version: UInt32 = 1
    /// Pages [0, runLength) are installed; the rest of the arena stays absent and untouched.
    private let runLength = 5
    private let pageCount = 8

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        let backend = try context.makeBackend(pages: pageCount, for: .alreadyPresent)
        defer { backend.release() }
        let arena = backend.arena
        let pageSize = arena.pageSize
        // The source of every install: pages [0, runLength) at `version`, never guest memory.
        let run = UnsafeMutableRawPointer.allocate(byteCount: runLength * pageSize, alignment: pageSize)
        defer { run.deallocate() }
        for i in 0..<runLength { PageContent.fill(run + i * pageSize, index: i, version: version, pageSize: pageSize) }
        let other = FreshPage(pageSize: pageSize)

        func expect(_ outcome: InstallOutcome, installed: Int, alreadyPresent: Int, _ what: String) {
            findings.expect(outcome.installed == installed && outcome.alreadyPresent == alreadyPresent,
                            "\(what): installed \(outcome.installed), already present \(outcome.alreadyPresent); "
                                + "expected \(installed) and \(alreadyPresent)")
        }
        expect(try backend.installAbsent(first: 1, count: 1, from: run + pageSize),
               installed: 1, alreadyPresent: 0, "installAbsent of absent page 1")
        // The same page again with other bytes: skipped, not overwritten.
        expect(try backend.installAbsent(first: 1, count: 1, from: other.contents(of: 1, version: version + 8)),
               installed: 0, alreadyPresent: 1, "installAbsent of page 1 again")
        if let problem = arena.ioViewProblem(page: 1, expected: .version(version)) { findings.add(problem) }
        // A run with a present page inside it (1) and at its end (4): the others are installed.
        expect(try backend.installAbsent(first: 4, count: 1, from: run + 4 * pageSize),
               installed: 1, alreadyPresent: 0, "installAbsent of absent page 4")
        expect(try backend.installAbsent(first: 0, count: runLength, from: run),
               installed: 3, alreadyPresent: 2, "installAbsent of pages 0..<5 with 1 and 4 present")
        // A run starting on a present page, all of it present.
        expect(try backend.installAbsent(first: 0, count: 2, from: run),
               installed: 0, alreadyPresent: 2, "installAbsent of pages 0..<2, both present")
        for page in 0..<runLength {
            if let problem = arena.ioViewProblem(page: page, expected: .version(version)) { findings.add(problem) }
        }

        // The guest reads every installed page without a single fault.
        let plan = (0..<runLength).map { GuestTouch(page: $0, access: .read, expected: .version(version)) }
        let resolver = ResolvingRun(backend: backend, timeoutSeconds: context.timeoutSeconds)
        let record = resolver.run(context.guests(for: .alreadyPresent, plans: [plan], arena: arena),
                                  findings: &findings) { _, _ in
            throw AgentError.migrationFailed("an installed page faulted")
        }
        guard !record.released else { return "" }
        return "installAbsent installed 5 pages and reported 5 already present without overwriting them "
            + "(runs with present pages inside and at either end); the guest read all \(runLength) without a fault"
    }
}
