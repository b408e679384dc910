/// Keeps a migration within `--max-bandwidth` on the wire, demand first: the
/// bulk stream is paced (`SO_MAX_PACING_RATE`) to what the demand pages of the
/// last few milliseconds leave of the limit (with room to spare: `bulkRate`). On a shared link the demand pages
/// alone can take a third of it (one guest thread faulting every ~100 µs on
/// 1 Gbit/s); a stream paced to the whole limit beside them keeps the link's
/// queue full, and each demand page waits behind it (BENCHMARKS.md).
///
/// Threading: the source's loop thread.
final class BulkPacer {
    /// Bytes a second for both connections together.
    let limit: UInt64
    /// What the bulk connection is paced to now.
    private(set) var bulkRate: UInt64
    private var timer: LoopTimer?
    private var demandBytes: UInt64 = 0
    private var demandRate: Double = 0

    init(limit: UInt64) {
        self.limit = limit
        bulkRate = limit
    }

    /// The bulk stream's rate beside `demandBytesPerSecond`: the limit less twice
    /// the demand, at least an eighth of the limit, so that the stream (which ends
    /// the migration) never stops. Twice, not once: a stream paced just beside
    /// slowed demand still sends 64 KiB bursts that keep the link's queue busy, a
    /// state that holds itself (a quarter more room left demand faults at ~180 µs
    /// in about half the link runs, BENCHMARKS.md); with twice the room demand
    /// speeds up, and the stream steps back further.
    static func bulkRate(limit: UInt64, demandBytesPerSecond: Double) -> UInt64 {
        let left = Double(limit) - demandBytesPerSecond * 2
        return max(limit / 8, UInt64(max(0, left)))
    }

    /// Re-paces every `Tuning.pacingMillis` from the demand bytes sent so far
    /// (`sent`), through `apply`, until `stop`.
    func start(loop: EventLoop, sent: @escaping () -> UInt64, apply: @escaping (UInt64) -> Void) {
        guard timer == nil else { return }
        demandBytes = sent()
        timer = LoopTimer(loop: loop, everyMillis: Tuning.pacingMillis) { [unowned self] in
            let now = sent()
            let window = Double(now - demandBytes) * 1000 / Double(Tuning.pacingMillis)
            demandBytes = now
            // Up at once when demand rises, down over a few windows when it ebbs.
            demandRate = max(window, demandRate * 0.75)
            let rate = Self.bulkRate(limit: limit, demandBytesPerSecond: demandRate)
            guard rate.distance(to: bulkRate).magnitude > limit / 32 else { return }
            bulkRate = rate
            apply(rate)
        }
    }

    func stop() {
        timer?.close()
        timer = nil
    }
}
