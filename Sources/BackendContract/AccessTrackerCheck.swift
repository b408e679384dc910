import Dispatch
import MigrateAgent
import SyntheticGuest

/// The access-tracker check of `migrate-agent selftest`, for one tracking
/// method, with real guest threads: pages read and pages written are both
/// reported, untouched pages are not, a reported page is protected again
/// (touched in one interval and not the next, it shows only in the first; touched
/// again later, it shows again), every page keeps its bytes, and `stop` is
/// idempotent and leaves the guest running unprotected. It also times the
/// guest's first access of each page with tracking armed against a second
/// access, which is what tracking costs the guest per page and interval.
///
/// Guest memory is touched only by threads the check creates; every wait has a
/// deadline, after which the tracker is stopped (which releases any blocked
/// thread) and the check fails.
struct AccessTrackerCheck {
    let method: AccessTrackingMethod
    let threads: Int
    let timeoutSeconds: Double

    private static let pages = 256
    private let version: UInt32 = 1

    /// Touch plans of the intervals: (page, access), spread over the threads.
    private static let intervals: [[(Int, AccessKind)]] = [
        [(1, .read), (5, .read), (9, .write), (12, .write), (200, .read), (255, .write)],
        [(20, .read)],
        [(1, .read), (9, .write)],
        [],
    ]

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        let arena = try Arena(size: Self.pages * Arena.systemPageSize, name: "selftest-tracker-\(method.rawValue)")
        for page in 0..<Self.pages { arena.fillThroughIOView(page: page, version: version) }  // fully populated, as on a source
        let tracker = try method.makeTracker(arena: arena, samplePercent: 100)
        defer { tracker.stop() }

        for (index, plan) in Self.intervals.enumerated() {
            guard touch(plan, arena: arena, tracker: tracker, label: "interval \(index + 1)", findings: &findings) else { return "" }
            let seen = try tracker.scan()
            let expected = Set(plan.map(\.0)).sorted()
            findings.expect(seen == expected, "interval \(index + 1): \(method.rawValue) reported \(seen), expected \(expected)")
        }
        let cost = try timeFirstAccess(arena: arena, tracker: tracker, findings: &findings)
        let costs = tracker.costs
        let distinct = Self.intervals.reduce(0) { $0 + Set($1.map(\.0)).count }
        if method == .minorSampling {
            findings.expect(costs.faults >= distinct, "the sampler counted \(costs.faults) faults for \(distinct) sampled page touches")
        }

        tracker.stop()
        tracker.stop()  // idempotent
        let after = Self.intervals[0].map { ($0.0, $0.1) }
        guard touch(after, arena: arena, tracker: tracker, label: "after stop()", findings: &findings) else { return "" }
        do {
            _ = try tracker.scan()
            findings.add("scan() after stop() did not throw")
        } catch {}
        for page in 0..<Self.pages {
            if let problem = arena.ioViewProblem(page: page, expected: .version(version)) { findings.add(problem) }
        }
        return "reads and writes reported, untouched pages not, re-protected after each scan, stop() idempotent; "
            + "guest first access with tracking \(cost); \(costs.faults) faults resolved in "
            + String(format: "%.1f µs", Double(costs.handlerNanos) / 1e3 / Double(max(1, costs.faults))) + " each, "
            + "\(costs.scans) scans in " + String(format: "%.0f µs", Double(costs.scanNanos) / 1e3 / Double(max(1, costs.scans))) + " each"
    }

    /// Runs one interval's touches on guest threads; false (and the tracker stopped) when they did not finish.
    private func touch(_ plan: [(Int, AccessKind)], arena: Arena, tracker: any AccessTracking,
                       label: String, findings: inout Findings) -> Bool {
        guard !plan.isEmpty else { return true }
        let n = min(threads, plan.count)
        let plans = (0..<n).map { t in
            stride(from: t, to: plan.count, by: n).map { GuestTouch(page: plan[$0].0, access: plan[$0].1, expected: .version(version)) }
        }
        let guests = GuestThreadGroup(label: "selftest-tracker-\(method.rawValue)", plans: plans, arena: arena)
        guests.start()
        guard guests.wait(until: .now() + timeoutSeconds) else {
            tracker.stop()  // releases whatever blocked
            findings.add("\(label): guest threads \(guests.unfinished.joined(separator: ", ")) did not finish within "
                + "\(timeoutSeconds) s with \(method.rawValue) tracking (stopped it)")
            return false
        }
        findings.add(contentsOf: guests.problems)
        return true
    }

    /// Reads every page twice on one guest thread, the first pass right after a scan
    /// (every page protected), and returns the per-page times of both passes.
    private func timeFirstAccess(arena: Arena, tracker: any AccessTracking, findings: inout Findings) throws(AgentError) -> String {
        _ = try tracker.scan()
        let pages = Self.pages
        let thread = DeadlineThread("selftest-tracker-timing") { [arena] () -> (UInt64, UInt64) in
            func pass() -> UInt64 {
                let start = DispatchTime.now().uptimeNanoseconds
                for page in 0..<pages { _ = GuestTouch(page: page, access: .read, expected: .version(1)).touchOnly(arena) }
                return DispatchTime.now().uptimeNanoseconds - start
            }
            let first = pass()
            return (first, pass())
        }
        guard let (first, second) = thread.join(within: timeoutSeconds) else {
            tracker.stop()
            findings.add("the timing thread did not finish within \(timeoutSeconds) s (stopped the tracker)")
            return "unknown"
        }
        let seen = try tracker.scan()
        findings.expect(seen == Array(0..<pages), "a pass over every page reported \(seen.count) of \(pages) pages")
        return String(format: "%.2f µs per page, %.2f µs without", Double(first) / 1e3 / Double(pages), Double(second) / 1e3 / Double(pages))
    }
}

/// One access-tracker method's verdict (`--json` prints these beside the backend results).
public struct AccessTrackerResult: Codable, Sendable {
    public var tracker: AccessTrackingMethod
    public var passed: Bool
    /// On a pass, what was exercised and what it cost; on a failure, why.
    public var detail: String

    /// `PASS tracker method` or `FAIL tracker method: reason`.
    public var line: String {
        passed ? "PASS tracker \(tracker.rawValue)" : "FAIL tracker \(tracker.rawValue): \(detail)"
    }
}
