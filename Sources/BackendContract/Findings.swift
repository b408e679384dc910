import MigrateAgent

/// What a check found wrong; the check passes while it stays empty. The same
/// problem found again (one per faulting thread, say) is counted, not repeated.
struct Findings {
    private var problems: [String] = []
    private var repeats: [String: Int] = [:]

    var isEmpty: Bool { problems.isEmpty }

    mutating func add(_ problem: String) {
        if let seen = repeats[problem] {
            repeats[problem] = seen + 1
        } else {
            repeats[problem] = 1
            problems.append(problem)
        }
    }

    mutating func add(contentsOf more: [String]) { more.forEach { add($0) } }

    /// Adds `problem` unless `condition` holds.
    mutating func expect(_ condition: Bool, _ problem: @autoclosure () -> String) {
        if !condition { add(problem()) }
    }

    /// The problems as one line: the first few, then how many more.
    func summary(limit: Int = 4) -> String {
        let shown = problems.prefix(limit).map { problem in
            let times = repeats[problem, default: 1]
            return times > 1 ? "\(problem) (\(times) times)" : problem
        }
        let rest = problems.count - shown.count
        return shown.joined(separator: "; ") + (rest > 0 ? "; and \(counted(rest, "more problem"))" : "")
    }
}

/// "1 fault", "3 faults": a count with its noun, for summaries.
func counted(_ count: Int, _ noun: String) -> String {
    "\(count) \(noun)\(count == 1 ? "" : "s")"
}
