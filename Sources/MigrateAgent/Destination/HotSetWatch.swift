/// The hot set the source announced before switch-over (the pages its guest
/// used most, which its background stream sends first): how many of them the
/// guest still faulted on, and when the last of them was resident here.
///
/// The pages come hottest first and mostly arrive in that order, so a cursor
/// that only moves forward over pages already here makes the check amortised
/// constant per installed frame. Threading: the destination's loop thread only.
final class HotSetWatch {
    private var pages: [Int] = []
    private var cursor = 0
    private var switchoverNanos: UInt64 = 0
    /// Milliseconds from switch-over until every hot page was resident (nil: not yet, or no hot set).
    private(set) var residentAfterMillis: Double?
    /// Pages present here at that moment, hot or not: near the hot set's size when it came first.
    private(set) var residentWithPages: Int?

    var count: Int { pages.count }

    /// One `hotSet` frame's pages, in the source's order.
    func announce(_ indices: [UInt64]) {
        pages.append(contentsOf: indices.lazy.map { Int($0) })
    }

    /// Hot pages that came on demand: the guest faulted on them before the stream brought them.
    func demandFetched(_ tracker: PageTracker) -> Int { pages.reduce(0) { $0 + (tracker.wasDemandFetched($1) ? 1 : 0) } }

    /// The guest starts here: residency is timed from now.
    func switchedOver(at nanos: UInt64) { switchoverNanos = nanos }

    /// Moves past every hot page already here; records the time once all are.
    func advance(_ tracker: PageTracker, now: UInt64) {
        guard residentAfterMillis == nil, !pages.isEmpty, switchoverNanos != 0 else { return }
        while cursor < pages.count, [.present, .removed].contains(tracker.state(pages[cursor])) { cursor += 1 }
        if cursor == pages.count {
            residentAfterMillis = Double(now - switchoverNanos) / 1e6
            residentWithPages = tracker.presentCount
        }
    }
}
