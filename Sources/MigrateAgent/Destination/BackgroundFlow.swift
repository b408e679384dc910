/// Demand first, but the stream keeps moving: while demand requests are
/// outstanding, the bulk connection is read at most
/// `Tuning.bulkReadBudgetDuringDemand` bytes per loop turn, so a fault waits
/// behind a few background installs at most. Holding the stream altogether
/// while demand was outstanding starved it under a guest that faults without
/// pause: nearly every page then came on demand, several times slower than
/// the stream alone.
///
/// Threading: the destination's loop thread only (asserted in debug builds).
final class BackgroundFlow {
    private let loop: EventLoop
    private let throttles: Bool
    /// The background stream; nil until it is connected.
    var bulk: TCPConnection? {
        didSet { bulk?.readBudget = budget }
    }
    /// Demand requests sent and not yet answered.
    private(set) var outstandingDemand = 0

    init(loop: EventLoop, throttlesDuringDemand: Bool) {
        self.loop = loop
        self.throttles = throttlesDuringDemand
    }

    private var budget: Int {
        outstandingDemand > 0 && throttles ? Tuning.bulkReadBudgetDuringDemand : Tuning.bulkReadBudget
    }

    /// A demand request went out.
    @inline(__always) func demandSent() {
        loop.assertOnLoop()
        outstandingDemand += 1
        if outstandingDemand == 1 { bulk?.readBudget = budget }
    }

    /// `count` demand requests were answered.
    @inline(__always) func demandAnswered(_ count: Int = 1) {
        loop.assertOnLoop()
        guard count > 0 else { return }
        outstandingDemand -= count
        if outstandingDemand == 0 { bulk?.readBudget = budget }
    }
}
