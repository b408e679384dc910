/// A score per page from the accessed sets of successive intervals: an aging
/// counter, `score = score >> 1 | 0x80` when the page was accessed in the
/// interval, `score >> 1` when not. The top bit is the last interval, the next
/// the one before, so a higher score is more recent, and among equally recent
/// pages more frequent. Pure value type, no I/O.
///
/// With a sampling tracker, a page not in the interval's sample ages as if it
/// had not been accessed; the ranking still favours what was seen recently.
///
/// Threading: a value owned by one thread (the source's loop).
public struct WorkingSetScores: Sendable, Equatable {
    public let pageCount: Int
    public private(set) var scores: [UInt8]
    /// Pages accessed per interval, oldest first.
    public private(set) var series: [Int] = []

    public init(pageCount: Int) {
        self.pageCount = pageCount
        scores = [UInt8](repeating: 0, count: pageCount)
    }

    /// Ages every page by one interval and marks `accessed` (page indices; out-of-range
    /// indices are ignored, duplicates count once).
    public mutating func record(accessed: [Int]) {
        var counted = 0
        scores.withUnsafeMutableBufferPointer { s in
            for i in s.indices { s[i] >>= 1 }
            for page in accessed where page >= 0 && page < pageCount && s[page] & 0x80 == 0 {
                s[page] |= 0x80
                counted += 1
            }
        }
        series.append(counted)
    }

    /// The intervals recorded so far.
    public var intervals: Int { series.count }

    public func score(of page: Int) -> UInt8 { scores[page] }

    /// Pages whose score is at least `threshold`, ascending. `0x80` means "accessed in the last interval".
    public func hotPages(threshold: UInt8) -> [Int] {
        let floor = max(threshold, 1)
        return scores.indices.filter { scores[$0] >= floor }
    }

    /// Pages with a non-zero score, hottest first, equal scores by ascending page.
    /// Pages never seen are not listed: the caller appends the rest.
    public func hotFirstOrder() -> [Int] {
        // Counting sort over the 255 non-zero scores: stable, so ties stay in page order.
        var counts = [Int](repeating: 0, count: 256)
        for score in scores { counts[Int(score)] += 1 }
        var start = [Int](repeating: 0, count: 256)
        var total = 0
        for score in stride(from: 255, through: 1, by: -1) {
            start[score] = total
            total += counts[score]
        }
        var order = [Int](repeating: 0, count: total)
        for (page, score) in scores.enumerated() where score != 0 {
            order[start[Int(score)]] = page
            start[Int(score)] += 1
        }
        return order
    }

    /// The estimated working set: pages accessed at least once in the last `window`
    /// intervals (1...8; the score keeps eight), the classic W(t, τ).
    public func estimatedWorkingSet(window: Int = 4) -> Int {
        let window = min(max(window, 1), 8)
        let mask = UInt8(truncatingIfNeeded: 0xFF00 >> window)
        return scores.reduce(0) { $0 + ($1 & mask != 0 ? 1 : 0) }
    }
}
