import Histogram

/// Timestamps of the demand faults in flight, and histograms of the phases
/// they went through: delivered (guest access until the loop read the fault),
/// request written, page received, resolved, and woken (resolved until the
/// guest ran again). What it keeps is bounded by the faults in flight
/// (`InFlightFaults`), not the arena; the stamps of delivery and wake-up
/// exist only with a guest in this process (`TouchLog`, a slot per guest
/// thread). Allocated once: nothing per fault.
/// Threading: the destination's loop thread only, except `collectWakeUps`,
/// called after the guest threads were joined.
final class FaultPhaseClock {
    /// Set when a guest starts in this process (`makeTouchLog`).
    private(set) var touchLog: TouchLog?
    private var inFlight = InFlightFaults(capacity: Tuning.faultsMeasuredInFlight)
    private var deliveredHistogram = LatencySummary.makeCompactHistogram()
    private var wokenHistogram = LatencySummary.makeCompactHistogram()
    private var batch: [Int] = []
    private var writtenHistogram = LatencySummary.makeCompactHistogram()
    private var receivedHistogram = LatencySummary.makeCompactHistogram()
    private var resolvedHistogram = LatencySummary.makeCompactHistogram()
    private var totalHistogram = LatencySummary.makeCompactHistogram()
    /// Demand faults by loop-side latency (fault read until resolved), in log2 buckets
    /// of microseconds as QEMU's `postcopy-latency-dist`: bucket i counts [2^i, 2^(i+1)) µs,
    /// bucket 0 also everything under 1 µs. Allocated once.
    private(set) var log2Micros = [UInt64](repeating: 0, count: 32)

    init() {
        batch.reserveCapacity(4096)
    }

    /// The log the guest about to start here, with `threads` threads, stamps its accesses in.
    func makeTouchLog(threads: Int) -> TouchLog {
        let log = touchLog ?? TouchLog(slots: threads)
        touchLog = log
        return log
    }

    /// Demand faults whose phases were not measured: more were in flight at once than the clock holds.
    var unmeasured: Int { inFlight.unmeasured }

    /// A fault on `page` was read and its request queued.
    func requested(_ page: Int, at now: UInt64) {
        inFlight.insert(page, read: now)
        if let stamps = touchLog?.faultRead(page, at: now) {
            if let delivered = stamps.delivered { _ = deliveredHistogram.record(delivered) }
            if let woken = stamps.wokenBefore { _ = wokenHistogram.record(woken) }
        }
        if batch.count < batch.capacity { batch.append(page) }
    }

    /// The queued requests were handed to the socket.
    func flushed(at now: UInt64) {
        for page in batch { inFlight.written(page, at: now) }
        batch.removeAll(keepingCapacity: true)
    }

    /// A requested page arrived (read at `received`) and was resolved at `resolved`.
    func resolved(_ page: Int, received: UInt64, resolved: UInt64) {
        guard let stamps = inFlight.remove(page) else { return }
        let read = stamps.read
        let written = max(stamps.written, read)
        _ = writtenHistogram.record(written - read)
        _ = receivedHistogram.record(received > written ? received - written : 0)
        _ = resolvedHistogram.record(resolved > received ? resolved - received : 0)
        _ = totalHistogram.record(resolved > read ? resolved - read : 0)
        let micros = (resolved > read ? resolved - read : 0) / 1000
        log2Micros[micros == 0 ? 0 : min(31, 63 - micros.leadingZeroBitCount)] += 1
        touchLog?.resolved(page, at: resolved)
    }

    /// A requested page will not be answered (the guest gave it back): its fault is no longer in flight.
    func abandoned(_ page: Int) { _ = inFlight.remove(page) }

    /// After the guest threads ended: the wake-ups of each thread's last demand fault.
    func collectWakeUps() {
        touchLog?.settleWakeUps { _ = wokenHistogram.record($0) }
    }

    var summary: FaultPhases {
        FaultPhases(delivered: LatencySummary(deliveredHistogram),
                    requestWritten: LatencySummary(writtenHistogram), pageReceived: LatencySummary(receivedHistogram),
                    resolved: LatencySummary(resolvedHistogram), woken: LatencySummary(wokenHistogram),
                    total: LatencySummary(totalHistogram), unmeasured: unmeasured > 0 ? unmeasured : nil)
    }
}
