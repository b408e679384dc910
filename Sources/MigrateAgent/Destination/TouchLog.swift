import CGuestAccess

/// When the in-process guest's threads began and ended their accesses, and
/// when the loop resolved their demand faults: with the loop's own timestamps
/// this splits a fault into delivery (access until the loop read the fault) and
/// wake-up (resolved until the guest ran again), the two parts no loop-side
/// clock can see. Only a guest running in this process has one; a VMM's guest
/// does not.
///
/// A guest thread has at most one access in flight, so the log keeps one slot
/// per thread (64 bytes, a cache line of its own), not a stamp per page: its
/// size is bounded by the threads, whatever the arena. Each stamp packs the
/// page (4 bytes) with a `TouchTick` (4 bytes, 16 ns), so one atomic load reads
/// both. The loop finds a fault's slot from its page alone: guest thread `t`
/// of `n` touches only the pages `p` with `p % n == t` (the synthetic guest's
/// split), so with any number of threads a fault costs one slot's load.
///
/// Threading: guest thread `t` writes only slot `t`'s access stamps (release
/// stores); the loop reads them (acquire loads) and alone writes the resolved
/// stamps and reads them back. `settleWakeUps` runs after the threads were joined.
public final class TouchLog: @unchecked Sendable {
    /// A slot's stamps, 8 bytes each, at these offsets in its 64 bytes: the
    /// page whose access the thread began last and when (0 before the first),
    /// the last demand-fetched page whose access returned and when, and the
    /// loop's own: the page it last resolved while the thread waited on it and
    /// when (0 once that wake-up was counted).
    private enum Field: Int { case started = 0, ended = 1, resolved = 2 }
    private static let wordsPerSlot = 8  // a cache line per slot: guest threads do not share one

    public let slots: Int
    private let words: UnsafeMutablePointer<UInt64>

    public init(slots: Int) {
        self.slots = max(1, slots)
        words = .allocate(capacity: self.slots * Self.wordsPerSlot)
        words.initialize(repeating: 0, count: self.slots * Self.wordsPerSlot)
    }

    deinit { words.deallocate() }

    /// Guest thread `thread` begins an access of `page` (pages below 2³²).
    @inline(__always) public func started(thread: Int, page: Int, at nanos: UInt64) {
        assert(page % slots == thread, "thread \(thread) of \(slots) touched page \(page), another thread's")
        atomic_store_u64(field(.started, thread), Self.pack(page, nanos))
    }

    /// Guest thread `thread`'s access of `page`, which was fetched on demand, returned.
    @inline(__always) public func ended(thread: Int, page: Int, at nanos: UInt64) {
        atomic_store_u64(field(.ended, thread), Self.pack(page, nanos))
    }

    /// The loop read a fault on `page` at `nanos`: how long since a guest thread
    /// began that access, and how long that thread took to resume after its
    /// previous demand fault was resolved (known now: it ran on to this access).
    func faultRead(_ page: Int, at nanos: UInt64) -> (delivered: UInt64?, wokenBefore: UInt64?) {
        guard let t = waiting(on: page) else { return (nil, nil) }
        let delivered = TouchTick.elapsed(from: Self.tick(atomic_load_u64(field(.started, t))), to: TouchTick.stamp(nanos))
        return (delivered, settle(t))
    }

    /// The loop resolved `page`'s demand fault at `nanos`.
    func resolved(_ page: Int, at nanos: UInt64) {
        if let t = waiting(on: page) { field(.resolved, t).pointee = Self.pack(page, nanos) }
    }

    /// After the guest threads were joined: each thread's last wake-up not yet counted.
    func settleWakeUps(_ record: (UInt64) -> Void) {
        for t in 0..<slots { if let woken = settle(t) { record(woken) } }
    }

    @inline(__always) private func field(_ f: Field, _ thread: Int) -> UnsafeMutablePointer<UInt64> {
        words + thread * Self.wordsPerSlot + f.rawValue
    }

    /// The thread whose access of `page` is in flight, if any: the one that owns the page.
    @inline(__always) private func waiting(on page: Int) -> Int? {
        let t = page % slots
        let stamp = atomic_load_u64(field(.started, t))
        return stamp >> 32 == UInt64(page) && Self.tick(stamp) != 0 ? t : nil
    }

    /// Slot `t`'s wake-up from its last resolved fault, once that access returned; counted once.
    private func settle(_ t: Int) -> UInt64? {
        let resolved = field(.resolved, t).pointee
        let ended = atomic_load_u64(field(.ended, t))
        guard resolved != 0, ended >> 32 == resolved >> 32 else { return nil }
        field(.resolved, t).pointee = 0
        return TouchTick.elapsed(from: Self.tick(resolved), to: Self.tick(ended))
    }

    @inline(__always) private static func pack(_ page: Int, _ nanos: UInt64) -> UInt64 {
        UInt64(truncatingIfNeeded: page) << 32 | UInt64(TouchTick.stamp(nanos))
    }

    @inline(__always) private static func tick(_ stamp: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: stamp) }
}

/// A timestamp in 4 bytes: nanoseconds / 16, wrapping every 68.7 s. Differences
/// are exact to 16 ns for spans under 34 s (wrapping subtraction); 0 means "not
/// stamped", so a stamp that truncates to 0 is stored as 1.
enum TouchTick {
    static let shift: UInt64 = 4

    @inline(__always) static func stamp(_ nanos: UInt64) -> UInt32 { max(1, UInt32(truncatingIfNeeded: nanos >> shift)) }

    /// `to - from` in nanoseconds; nil when either is unstamped or `to` is not within 34 s after `from`.
    @inline(__always) static func elapsed(from: UInt32, to: UInt32) -> UInt64? {
        guard from != 0, to != 0 else { return nil }
        let ticks = to &- from
        return ticks < 1 << 31 ? UInt64(ticks) << shift : nil
    }
}
