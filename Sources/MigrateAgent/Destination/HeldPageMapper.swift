/// After a hybrid switch-over on a backend that must map pre-copied pages
/// (minor: they sit in the page cache, unmapped in the guest view), maps them
/// in slices of `Tuning.mapSlicePages`, one slice per loop turn, while the guest
/// already runs; a fault on a page not mapped yet maps it at once
/// (`FaultAction.mapHeld`). Mapping them all before the guest ran was most of
/// the downtime (about 40 ms for 512 MiB here).
///
/// Threading: the destination's loop thread only.
final class HeldPageMapper {
    private let loop: EventLoop
    private let backend: any ProtectionBackend
    /// Runs of pages held at switch-over, in address order.
    private var runs: [(first: Int, count: Int)]
    private var next = 0
    private var turn: NextTurn?
    private let failed: (AgentError) -> Void
    private(set) var pagesMapped = 0

    init(loop: EventLoop, backend: any ProtectionBackend, runs: [(first: Int, count: Int)], failed: @escaping (AgentError) -> Void) {
        self.loop = loop
        self.backend = backend
        self.runs = runs
        self.failed = failed
    }

    var finished: Bool { next >= runs.count }

    func start() {
        loop.assertOnLoop()
        guard !finished else { return }
        turn = NextTurn(loop: loop) { [unowned self] in step() }
        turn?.schedule()
    }

    private func step() {
        var budget = Tuning.mapSlicePages
        do throws(AgentError) {
            while budget > 0, next < runs.count {
                let run = runs[next]
                let n = min(budget, run.count)
                try backend.activate(first: run.first, count: n)
                pagesMapped += n
                budget -= n
                if n == run.count { next += 1 } else { runs[next] = (run.first + n, run.count - n) }
            }
        } catch {
            close()
            return failed(error)
        }
        if finished { close() } else { turn?.schedule() }
    }

    func close() {
        turn?.close()
        turn = nil
    }
}
