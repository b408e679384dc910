/// Demand first, but the stream keeps moving: while demand requests are
/// outstanding, the bulk connection is read at most
/// `Tuning.bulkReadBudgetDuringDemand` bytes per loop turn, so a fault waits
/// behind a few background installs at most. Holding the stream altogether
/// while demand was outstanding starved it under a guest that faults without
/// pause: nearly every page then came on demand, several times slower than
/// the stream alone. Reading also follows the background installer's room
/// (`installer(free:resumeAt:)`): what is read goes to it.
///
/// Threading: the destination's loop thread only (asserted in debug builds).
final class BackgroundFlow {
    private let loop: EventLoop
    private let throttles: Bool
    /// The background stream; nil until it is connected.
    var bulk: TCPConnection? {
        didSet { apply() }
    }
    /// Demand requests sent and not yet answered.
    private(set) var outstandingDemand = 0
    /// Bytes the background installer can take now (nil: there is none).
    private var installerRoom: Int?
    /// Reading waits for the installer to have room.
    private var waitingForInstaller = false

    init(loop: EventLoop, throttlesDuringDemand: Bool) {
        self.loop = loop
        self.throttles = throttlesDuringDemand
    }

    private var budget: Int {
        let budget = outstandingDemand > 0 && throttles ? Tuning.bulkReadBudgetDuringDemand : Tuning.bulkReadBudget
        return min(budget, installerRoom.map { max($0, 1) } ?? budget)
    }

    private func apply() {
        bulk?.readBudget = budget
        bulk?.isPaused = waitingForInstaller
    }

    /// The background installer has `free` bytes of room: reading stops when none is
    /// left and starts again once `resumeAt` bytes are free (not for every slot: the
    /// loop and the installer would wake each other for each).
    func installer(free: Int, resumeAt: Int) {
        loop.assertOnLoop()
        installerRoom = free
        if free == 0 { waitingForInstaller = true } else if free >= resumeAt { waitingForInstaller = false }
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
