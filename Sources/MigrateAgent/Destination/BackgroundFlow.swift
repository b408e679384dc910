/// Demand first, but the stream keeps moving: while demand requests are
/// outstanding, and for `Tuning.bulkThrottleAfterDemandNanos` after (the
/// guest's next fault is near), the bulk connection is read at most
/// `Tuning.bulkReadBudgetDuringDemand` bytes per loop turn, so a fault waits
/// behind a few background installs at most. Not after faults of a guest that
/// reads what the stream brings (in address order, or on pages the installer
/// holds): slowing the stream would slow that guest. Holding the stream altogether
/// while demand was outstanding starved it under a guest that faults without
/// pause: nearly every page then came on demand, several times slower than
/// the stream alone. Reading also follows the background installer's room
/// (`installer(free:resumeAt:)`): what is read goes to it.
///
/// Threading: the destination's loop thread only (asserted in debug builds).
final class BackgroundFlow {
    private let loop: EventLoop
    private let throttles: Bool
    /// Whether the throttle outlasts the requests by `Tuning.bulkThrottleAfterDemandNanos`.
    private let holdsAfterDemand: Bool
    /// The background stream; nil until it is connected.
    var bulk: TCPConnection? {
        didSet { apply() }
    }
    /// Demand requests sent and not yet answered.
    private(set) var outstandingDemand = 0
    /// Bytes the background installer can take now (nil: there is none).
    private var installerRoom: Int?
    /// Reading waits for the installer to have room.
    private(set) var isWaitingForInstaller = false
    /// When the loop last sent requests for pages the stream was not bringing
    /// (0: a fault waited on a page the stream itself brings).
    private var lastDemandNanos: UInt64 = 0

    init(loop: EventLoop, throttlesDuringDemand: Bool, holdsAfterDemand: Bool = true) {
        self.loop = loop
        self.throttles = throttlesDuringDemand
        self.holdsAfterDemand = holdsAfterDemand
    }

    /// Bytes the bulk connection may be read per loop turn now.
    var budget: Int {
        let recent = holdsAfterDemand && EventLoop.nowNanos() &- lastDemandNanos < Tuning.bulkThrottleAfterDemandNanos
        let demanding = outstandingDemand > 0 || recent
        let budget = demanding && throttles ? Tuning.bulkReadBudgetDuringDemand : Tuning.bulkReadBudget
        return min(budget, installerRoom.map { max($0, 1) } ?? budget)
    }

    private func apply() {
        bulk?.readBudget = budget
        bulk?.isPaused = isWaitingForInstaller
    }

    /// The background installer has `free` bytes of room: reading stops when none is
    /// left and starts again once `resumeAt` bytes are free (not for every slot: the
    /// loop and the installer would wake each other for each).
    func installer(free: Int, resumeAt: Int) {
        loop.assertOnLoop()
        installerRoom = free
        if free == 0 { isWaitingForInstaller = true } else if free >= resumeAt { isWaitingForInstaller = false }
        apply()
    }

    /// The loop installs what it reads itself: the installer's room no longer bounds reading.
    func installerUnused() {
        loop.assertOnLoop()
        guard installerRoom != nil || isWaitingForInstaller else { return }
        installerRoom = nil
        isWaitingForInstaller = false
        apply()
    }

    /// The loop served faults at `now`. Requests went out: the stream stays
    /// throttled for `Tuning.bulkThrottleAfterDemandNanos` after they are
    /// answered, since a faulting guest faults again soon. A fault waited on a
    /// page the stream itself brings (a guest reading behind it): no throttle.
    func demandActivity(waitingOnStream: Bool, at now: UInt64) {
        loop.assertOnLoop()
        lastDemandNanos = waitingOnStream ? 0 : now
        apply()
    }

    /// A demand request went out.
    @inline(__always) func demandSent() {
        loop.assertOnLoop()
        outstandingDemand += 1
        if outstandingDemand == 1 { apply() }
    }

    /// `count` demand requests were answered.
    @inline(__always) func demandAnswered(_ count: Int = 1) {
        loop.assertOnLoop()
        guard count > 0 else { return }
        outstandingDemand -= count
        if outstandingDemand == 0 { apply() }
    }
}
