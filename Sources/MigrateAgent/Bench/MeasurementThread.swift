import Foundation
import Histogram

/// A thread of the benchmark's own that runs one measurement body, joined with
/// a deadline. Memory that may fault into a userfaultfd is touched only from
/// such threads, so the controlling thread can always give up (and release the
/// range) instead of blocking with the faulting thread.
/// Threading: created and joined by one controlling thread; the result is
/// written once by the measurement thread before it signals.
final class MeasurementThread<Result: Sendable>: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var result: Result?
    private var joined = false

    init(name: String, _ body: @escaping @Sendable () -> Result) {
        let thread = Thread { [self] in
            let value = body()
            lock.withLock { result = value }
            finished.signal()
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// The result, or nil when the thread is still running after `seconds`.
    func join(within seconds: Double) -> Result? {
        if !lock.withLock({ joined }) {
            guard finished.wait(timeout: .now() + seconds) == .success else { return nil }
            lock.withLock { joined = true }
        }
        return lock.withLock { result }
    }
}

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
