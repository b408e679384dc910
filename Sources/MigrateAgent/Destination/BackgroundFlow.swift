/// Demand first: while demand requests are outstanding, the bulk connection is
/// not read, because on two cores decoding and installing background pages is
/// what a demand fault would otherwise wait behind. So that the migration always
/// moves on, a hold longer than `Tuning.demandHoldLimitNanos` is released until
/// demand goes quiet and starts again.
///
/// Threading: the destination's loop thread only (asserted in debug builds).
final class BackgroundFlow {
    private let loop: EventLoop
    private let holdsDuringDemand: Bool
    /// The background stream; nil until it is connected.
    var bulk: TCPConnection?
    /// Demand requests sent and not yet answered.
    private(set) var outstandingDemand = 0

    init(loop: EventLoop, holdsDuringDemand: Bool) {
        self.loop = loop
        self.holdsDuringDemand = holdsDuringDemand
    }

    /// A demand request went out.
    @inline(__always) func demandSent() {
        loop.assertOnLoop()
        outstandingDemand += 1
        if outstandingDemand == 1, holdsDuringDemand { bulk?.holdReading() }
    }

    /// `count` demand requests were answered.
    @inline(__always) func demandAnswered(_ count: Int = 1) {
        loop.assertOnLoop()
        guard count > 0 else { return }
        outstandingDemand -= count
        if outstandingDemand == 0, holdsDuringDemand { bulk?.resumeReading() }
    }

    /// Releases a hold that lasted too long. Called from the loop's tick.
    func releaseIfHeldTooLong(now: UInt64) {
        loop.assertOnLoop()
        if let bulk, bulk.held, now - bulk.heldSinceNanos > Tuning.demandHoldLimitNanos { bulk.resumeReading() }
    }
}
