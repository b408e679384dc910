import Histogram
import MigrateAgent

/// Latencies recorded into a preallocated buffer (no allocation while measuring).
/// Threading: written by one measurement thread, read after it was joined.
final class LatencySamples: @unchecked Sendable {
    let capacity: Int
    let values: UnsafeMutablePointer<UInt64>
    var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        values = .allocate(capacity: max(1, capacity))
    }

    deinit { values.deallocate() }

    @inline(__always) func append(_ nanos: UInt64) {
        guard count < capacity else { return }
        values[count] = nanos
        count += 1
    }

    /// The samples after the first `warmup`, as a histogram of nanoseconds.
    func histogram(droppingFirst warmup: Int) -> Histogram<UInt64> {
        var h = LatencySummary.makeHistogram()
        if count > warmup { for i in warmup..<count { _ = h.record(values[i]) } }
        return h
    }
}
