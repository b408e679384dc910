import CGuestAccess

/// When each page's first access began and returned, as the in-process guest's
/// thread saw it, and when the loop resolved the page's demand fault: with the
/// loop's own timestamps this splits a fault into delivery (access until the
/// loop read the fault) and wake-up (resolved until the guest ran again), the
/// two parts no loop-side clock can see. Only a guest running in this process
/// has one; a VMM's guest does not.
///
/// Stamps are `TouchTick`s (4 bytes, 16 ns), so the log costs 12 bytes a page
/// instead of 24, and only for pages the guest touched (lazily backed).
///
/// Threading: a guest thread writes only its own pages' starts and ends
/// (release stores); the loop reads a start when it reads the fault (acquire
/// load) and writes the resolved stamps; ends and resolved stamps are read
/// together only after the guest threads were joined.
public final class TouchLog: @unchecked Sendable {
    private let pageCount: Int
    private let starts: UnsafeMutablePointer<UInt32>
    private let ends: UnsafeMutablePointer<UInt32>
    private let resolved: UnsafeMutablePointer<UInt32>

    public init(pageCount: Int) {
        self.pageCount = pageCount
        starts = ZeroedArray.allocate(UInt32.self, count: pageCount)
        ends = ZeroedArray.allocate(UInt32.self, count: pageCount)
        resolved = ZeroedArray.allocate(UInt32.self, count: pageCount)
    }

    deinit {
        ZeroedArray.free(starts)
        ZeroedArray.free(ends)
        ZeroedArray.free(resolved)
    }

    @inline(__always) public func started(_ page: Int, at nanos: UInt64) { atomic_store_u32(starts + page, TouchTick.stamp(nanos)) }
    @inline(__always) public func ended(_ page: Int, at nanos: UInt64) { atomic_store_u32(ends + page, TouchTick.stamp(nanos)) }
    /// The loop resolved `page`'s demand fault at `nanos`.
    @inline(__always) func resolved(_ page: Int, at nanos: UInt64) { resolved[page] = TouchTick.stamp(nanos) }

    /// Nanoseconds from the guest's access of `page` until `nanos` (the loop read its fault), or nil when not stamped.
    @inline(__always) func delivery(of page: Int, readAt nanos: UInt64) -> UInt64? {
        TouchTick.elapsed(from: atomic_load_u32(starts + page), to: TouchTick.stamp(nanos))
    }

    /// After the guest threads were joined: each resolved page's wait from its resolution until its access returned.
    func recordWakeUps(_ record: (UInt64) -> Void) {
        for page in 0..<pageCount where resolved[page] != 0 {
            if let woken = TouchTick.elapsed(from: resolved[page], to: atomic_load_u32(ends + page)) { record(woken) }
        }
    }
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
