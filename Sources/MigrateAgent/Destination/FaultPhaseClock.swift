import Histogram

/// Timestamps of the demand faults in flight, per page, and histograms of the
/// phases they went through: delivered (guest access until the loop read the
/// fault), request written, page received, resolved, and woken (resolved until
/// the guest ran again). Flat arrays allocated once: nothing per fault.
/// Threading: the destination's loop thread only, except `collectWakeUps`,
/// called after the guest threads were joined.
final class FaultPhaseClock {
    let touchLog: TouchLog
    private let faultRead: UnsafeMutablePointer<UInt64>
    private let requestWritten: UnsafeMutablePointer<UInt64>
    private let resolvedAt: UnsafeMutablePointer<UInt64>
    private var deliveredHistogram = LatencySummary.makePhaseHistogram()
    private var wokenHistogram = LatencySummary.makePhaseHistogram()
    private var batch: [Int] = []
    private var writtenHistogram = LatencySummary.makePhaseHistogram()
    private var receivedHistogram = LatencySummary.makePhaseHistogram()
    private var resolvedHistogram = LatencySummary.makePhaseHistogram()
    private var totalHistogram = LatencySummary.makePhaseHistogram()
    /// Demand faults by loop-side latency (fault read until resolved), in log2 buckets
    /// of microseconds as QEMU's `postcopy-latency-dist`: bucket i counts [2^i, 2^(i+1)) µs,
    /// bucket 0 also everything under 1 µs. Allocated once.
    private(set) var log2Micros = [UInt64](repeating: 0, count: 32)

    init(pageCount: Int) {
        touchLog = TouchLog(pageCount: pageCount)
        // Written only for demand-fetched pages: untouched pages cost no memory.
        resolvedAt = ZeroedArray.allocate(UInt64.self, count: pageCount)
        faultRead = ZeroedArray.allocate(UInt64.self, count: pageCount)
        requestWritten = ZeroedArray.allocate(UInt64.self, count: pageCount)
        batch.reserveCapacity(4096)
    }

    deinit {
        ZeroedArray.free(resolvedAt)
        ZeroedArray.free(faultRead)
        ZeroedArray.free(requestWritten)
    }

    /// A fault on `page` was read and its request queued.
    func requested(_ page: Int, at now: UInt64) {
        faultRead[page] = now
        let touched = touchLog.start(of: page)
        if touched != 0 && touched <= now { _ = deliveredHistogram.record(now - touched) }
        if batch.count < batch.capacity { batch.append(page) }
    }

    /// The queued requests were handed to the socket.
    func flushed(at now: UInt64) {
        for page in batch { requestWritten[page] = now }
        batch.removeAll(keepingCapacity: true)
    }

    /// A requested page arrived (read at `received`) and was resolved at `resolved`.
    func resolved(_ page: Int, received: UInt64, resolved: UInt64) {
        let read = faultRead[page]
        guard read != 0 else { return }
        let written = max(requestWritten[page], read)
        _ = writtenHistogram.record(written - read)
        _ = receivedHistogram.record(received > written ? received - written : 0)
        _ = resolvedHistogram.record(resolved > received ? resolved - received : 0)
        _ = totalHistogram.record(resolved - read)
        let micros = (resolved - read) / 1000
        log2Micros[micros == 0 ? 0 : min(31, 63 - micros.leadingZeroBitCount)] += 1
        resolvedAt[page] = resolved
        faultRead[page] = 0
    }

    /// After the guest threads ended: how long each resolved fault took to resume its thread.
    func collectWakeUps(pageCount: Int) {
        for page in 0..<pageCount where resolvedAt[page] != 0 {
            let end = touchLog.end(of: page)
            if end >= resolvedAt[page] { _ = wokenHistogram.record(end - resolvedAt[page]) }
        }
    }

    var summary: FaultPhases {
        FaultPhases(delivered: LatencySummary(deliveredHistogram),
                    requestWritten: LatencySummary(writtenHistogram), pageReceived: LatencySummary(receivedHistogram),
                    resolved: LatencySummary(resolvedHistogram), woken: LatencySummary(wokenHistogram),
                    total: LatencySummary(totalHistogram))
    }
}
