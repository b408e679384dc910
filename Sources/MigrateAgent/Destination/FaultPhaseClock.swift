import Histogram

/// Timestamps of the demand faults in flight, per page, and histograms of the
/// phases they went through (fault read, request written, page received,
/// resolved). Flat arrays allocated once: nothing per fault.
/// Threading: the destination's loop thread only.
final class FaultPhaseClock {
    private let faultRead: UnsafeMutablePointer<UInt64>
    private let requestWritten: UnsafeMutablePointer<UInt64>
    private var batch: [Int] = []
    private var writtenHistogram = LatencySummary.makeHistogram()
    private var receivedHistogram = LatencySummary.makeHistogram()
    private var resolvedHistogram = LatencySummary.makeHistogram()
    private var totalHistogram = LatencySummary.makeHistogram()

    init(pageCount: Int) {
        faultRead = .allocate(capacity: pageCount)
        faultRead.initialize(repeating: 0, count: pageCount)
        requestWritten = .allocate(capacity: pageCount)
        requestWritten.initialize(repeating: 0, count: pageCount)
        batch.reserveCapacity(4096)
    }

    deinit {
        faultRead.deallocate()
        requestWritten.deallocate()
    }

    /// A fault on `page` was read and its request queued.
    func requested(_ page: Int, at now: UInt64) {
        faultRead[page] = now
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
        faultRead[page] = 0
    }

    var summary: FaultPhases {
        FaultPhases(requestWritten: LatencySummary(writtenHistogram), pageReceived: LatencySummary(receivedHistogram),
                    resolved: LatencySummary(resolvedHistogram), total: LatencySummary(totalHistogram))
    }
}
