import Glibc

/// The source's warm-up before it accepts a destination (`--track-seconds`):
/// the guest runs while an `AccessTracking` scans its accessed pages every
/// interval, and `WorkingSetScores` turns the scans into the hot-first order
/// the migration sends pages in. With no tracker it only waits, so the
/// guest's throughput over the same window is the baseline of the tracker's
/// cost. Where the workload knows what it touched (the synthetic guest), each
/// interval's estimate is checked against it.
///
/// Threading: runs on the source's controlling thread before the loop starts;
/// the guest's threads only touch memory, the tracker may run one of its own.
struct WorkingSetWarmUp {
    struct Settings: Sendable {
        var seconds: Double
        var intervalMillis: Int
        /// nil: warm up without tracking (the baseline).
        var method: AccessTrackingMethod?
        var samplePercent: Int
    }

    /// What the warm-up found.
    struct Outcome {
        var report: WorkingSetReport
        /// Every page seen, hottest first (the head of the stream).
        var order: [Int]
        /// The prefix of `order` hot enough to announce as the hot set.
        var hotSet: [Int]
    }

    static func run(arena: Arena, guest: any SourceWorkload, settings: Settings,
                    progress: (String) -> Void) throws(AgentError) -> Outcome {
        var report = WorkingSetReport(method: settings.method?.rawValue ?? "off", intervalMillis: settings.intervalMillis,
                                      samplePercent: settings.method == .minorSampling ? settings.samplePercent : 100)
        let tracker = try settings.method?.makeTracker(arena: arena, samplePercent: settings.samplePercent)
        defer { tracker?.stop() }
        var scores = WorkingSetScores(pageCount: arena.pageCount)
        var truthSeen = 0, estimateSeen = 0, bothSeen = 0
        _ = guest.takeTouchedPages()  // the truth starts with the first interval
        let startNanos = EventLoop.nowNanos()
        let startAccesses = guest.accessCount
        let intervals = max(1, Int((settings.seconds * 1000 / Double(settings.intervalMillis)).rounded()))
        for i in 1...intervals {
            sleepUntil(startNanos + UInt64(i) * UInt64(settings.intervalMillis) * 1_000_000)  // the scan's pacing
            guard let tracker else { continue }
            let accessed = try tracker.scan()
            scores.record(accessed: accessed)
            if let truth = guest.takeTouchedPages() {
                truthSeen += truth.count
                estimateSeen += accessed.count
                bothSeen += sortedIntersectionCount(accessed, truth)
            }
        }
        let seconds = Double(EventLoop.nowNanos() - startNanos) / 1e9
        report.seconds = seconds
        if let startAccesses, let end = guest.accessCount {
            report.guestAccessesPerSecond = Double(end - startAccesses) / seconds
        }
        guard let tracker else {
            progress("source: warmed up \(String(format: "%.1f", seconds)) s without access tracking")
            return Outcome(report: report, order: [], hotSet: [])
        }
        tracker.stop()  // before anything else registers the guest view
        report.costs = tracker.costs
        report.pagesAccessedPerInterval = scores.series
        report.estimatedWorkingSetPages = scores.estimatedWorkingSet()
        if truthSeen > 0 { report.recall = Double(bothSeen) / Double(truthSeen) }
        if estimateSeen > 0, truthSeen > 0 { report.precision = Double(bothSeen) / Double(estimateSeen) }
        let order = scores.hotFirstOrder()
        let hot = order.prefix { scores.score(of: $0) >= Tuning.hotScoreThreshold }
        report.hotSetPages = hot.count
        progress("source: tracked the guest's accesses for \(String(format: "%.1f", seconds)) s (\(settings.method!.rawValue)): "
            + "working set about \(report.estimatedWorkingSetPages) pages, hot set \(hot.count) pages"
            + (report.recall.map { String(format: "; recall %.2f, precision %.2f against the pages the guest touched", $0, report.precision ?? 0) } ?? ""))
        return Outcome(report: report, order: order, hotSet: Array(hot))
    }

    /// Elements two ascending lists share.
    static func sortedIntersectionCount(_ a: [Int], _ b: [Int]) -> Int {
        var i = 0, j = 0, n = 0
        while i < a.count, j < b.count {
            if a[i] == b[j] { n += 1; i += 1; j += 1 } else if a[i] < b[j] { i += 1 } else { j += 1 }
        }
        return n
    }

    private static func sleepUntil(_ nanos: UInt64) {
        let now = EventLoop.nowNanos()
        guard nanos > now else { return }
        var request = timespec(tv_sec: Int((nanos - now) / 1_000_000_000), tv_nsec: Int((nanos - now) % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
