import Glibc

/// Keeps the loop polling instead of sleeping for a short window after
/// demand activity. Waking a sleeping thread on another (virtual) CPU is the
/// largest single cost of a remote fault here (docs/kernel-and-swift-notes.md), and a demand
/// fault pays it at every hop; while a request is in flight, or right after
/// one, the next event is likely within microseconds. An active idle handle
/// makes libuv poll with a zero timeout, so the loop spins until the window
/// ends with no new activity. A window of 0 disables it.
/// Threading: the loop thread only.
public final class BusyPoll {
    private let windowNanos: UInt64
    private var until: UInt64 = 0
    private var turn: NextTurn?

    public init(loop: EventLoop, windowMicros: Int) {
        windowNanos = UInt64(max(0, windowMicros)) * 1000
        guard windowNanos > 0 else { return }
        turn = NextTurn(loop: loop) { [unowned self] in
            guard EventLoop.nowNanos() < until else { return }
            sched_yield()  // another runnable thread on this CPU (the peer, a guest) goes first
            turn?.schedule()
        }
    }

    /// While set, demand activity starts no window (one under way runs out).
    public var isSuspended = false

    /// Whether a window is open now.
    public var isPolling: Bool { turn != nil && EventLoop.nowNanos() < until }

    /// Demand activity now: keep polling for another window.
    @inline(__always) public func extend(from now: UInt64) {
        guard let turn, !isSuspended else { return }
        until = now + windowNanos
        turn.schedule()
    }

    public func close() {
        // NextTurn.close asserts the loop thread.
        turn?.close()
        turn = nil
    }
}
