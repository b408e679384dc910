import CGuestAccess

/// When each page's first access began and returned, as the guest thread saw
/// it: with the loop's own timestamps this splits a fault into delivery
/// (access until the loop read the fault) and wake-up (resolved until the
/// guest ran again), the two parts no loop-side clock can see.
///
/// Threading: a guest thread writes only its own pages' slots (release
/// stores); the loop reads a start when it reads the fault (acquire load),
/// and the ends only after the guest threads were joined.
public final class TouchLog: @unchecked Sendable {
    private let starts: UnsafeMutablePointer<UInt64>
    private let ends: UnsafeMutablePointer<UInt64>

    public init(pageCount: Int) {
        // Written only for pages a guest touches here: none without a guest.
        starts = ZeroedArray.allocate(UInt64.self, count: pageCount)
        ends = ZeroedArray.allocate(UInt64.self, count: pageCount)
    }

    deinit {
        ZeroedArray.free(starts)
        ZeroedArray.free(ends)
    }

    @inline(__always) public func started(_ page: Int, at nanos: UInt64) { atomic_store_u64(starts + page, nanos) }
    @inline(__always) public func ended(_ page: Int, at nanos: UInt64) { atomic_store_u64(ends + page, nanos) }
    @inline(__always) func start(of page: Int) -> UInt64 { atomic_load_u64(starts + page) }
    @inline(__always) func end(of page: Int) -> UInt64 { atomic_load_u64(ends + page) }
}
