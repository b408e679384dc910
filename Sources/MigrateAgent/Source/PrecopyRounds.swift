/// Pre-copy: rounds of copying the arena while the guest still runs here, each
/// round sending what the guest dirtied during the one before, until a round
/// dirties few pages or the round limit is reached. Dirty pages are found by a
/// `DirtyTracking` armed before the guest writes again.
///
/// Threading: the source's loop thread only (asserted in debug builds).
final class PrecopyRounds {
    private let loop: EventLoop
    private let arena: Arena
    private let tracker: any DirtyTracking
    private let maxRounds: Int
    private let convergePages: Int
    private let pagesPerFrame: Int
    private(set) var rounds: [PrecopyRound] = []
    private var roundStartNanos: UInt64 = 0

    init(loop: EventLoop, arena: Arena, tracker: any DirtyTracking, maxRounds: Int, convergePages: Int?, pagesPerFrame: Int) {
        self.loop = loop
        self.arena = arena
        self.tracker = tracker
        self.maxRounds = maxRounds
        self.convergePages = convergePages ?? max(1, arena.pageCount / 64)
        self.pagesPerFrame = pagesPerFrame
    }

    /// The stream of the next round: the whole arena first, then `pages`.
    func startRound(pages: [Int]?) -> PageStream {
        loop.assertOnLoop()
        roundStartNanos = EventLoop.nowNanos()
        return PageStream(arena: arena, pages: pages, pagesPerFrame: pagesPerFrame)
    }

    /// A round was fully handed to the socket. Returns what the guest dirtied
    /// meanwhile, and whether to switch over now (converged or out of rounds).
    func endRound(pagesSent: Int) throws(AgentError) -> (dirty: [Int], converged: Bool) {
        loop.assertOnLoop()
        let dirty = try tracker.collect()
        rounds.append(PrecopyRound(round: rounds.count + 1, pagesSent: pagesSent, pagesDirtied: dirty.count,
                                   seconds: Double(EventLoop.nowNanos() - roundStartNanos) / 1e9))
        return (dirty, rounds.count >= maxRounds || dirty.count <= convergePages)
    }

    /// With the guest paused: the pages dirtied since they were last sent,
    /// `pending` (the last round's) included. Tracking is stopped by the caller
    /// (`TrackerRetirement`): after the switch-over, not during it.
    func finalStaleSet(pending: [Int]) throws(AgentError) -> PageSet {
        loop.assertOnLoop()
        let final = try tracker.collect()
        let stale = PageSet(pageCount: arena.pageCount)
        for page in pending { stale.insert(page) }
        for page in final { stale.insert(page) }
        return stale
    }
}
