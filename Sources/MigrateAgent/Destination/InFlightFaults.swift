/// The loop's timestamps of the demand faults still waiting for their page,
/// keyed by page: an open-addressed table (linear probing, deletion by
/// backward shift) of a fixed capacity, so what the fault clock keeps grows
/// with the faults in flight (one per blocked guest thread) and not with the
/// arena. When it is full a fault goes unmeasured (counted), never refused.
///
/// Threading: the destination's loop thread only. Allocated once; nothing per fault.
struct InFlightFaults: ~Copyable {
    /// The fault was read at `read` and its request handed to the socket at `written` (0: not yet).
    struct Stamps: Equatable {
        var read: UInt64
        var written: UInt64
    }

    private static let empty = -1
    private let mask: Int
    private let pages: UnsafeMutablePointer<Int>
    private let stamps: UnsafeMutablePointer<Stamps>
    private(set) var count = 0
    /// Faults not measured because the table was full.
    private(set) var unmeasured = 0

    /// `capacity` is rounded up to a power of two; at most half of it is used, so probes stay short.
    init(capacity: Int) {
        let slots = max(2, capacity).nextPowerOfTwo
        mask = slots - 1
        pages = .allocate(capacity: slots)
        pages.initialize(repeating: Self.empty, count: slots)
        stamps = .allocate(capacity: slots)
        stamps.initialize(repeating: Stamps(read: 0, written: 0), count: slots)
    }

    deinit {
        pages.deallocate()
        stamps.deallocate()
    }

    var capacity: Int { (mask + 1) / 2 }

    /// A fault on `page` was read at `read` (a fault read again restarts its clock).
    mutating func insert(_ page: Int, read: UInt64) {
        var i = slot(of: page)
        while pages[i] != Self.empty {
            if pages[i] == page {
                stamps[i] = Stamps(read: read, written: 0)
                return
            }
            i = (i + 1) & mask
        }
        guard count < capacity else {
            unmeasured += 1
            return
        }
        pages[i] = page
        stamps[i] = Stamps(read: read, written: 0)
        count += 1
    }

    /// `page`'s request was handed to the socket at `written` (the first time only).
    mutating func written(_ page: Int, at written: UInt64) {
        guard let i = find(page), stamps[i].written == 0 else { return }
        stamps[i].written = written
    }

    /// Takes `page` out of the table: its stamps, or nil when it was not in flight.
    mutating func remove(_ page: Int) -> Stamps? {
        guard var hole = find(page) else { return nil }
        let taken = stamps[hole]
        count -= 1
        // Backward shift: move up each later entry of the run whose home is not between the hole and it.
        var i = hole
        while true {
            i = (i + 1) & mask
            guard pages[i] != Self.empty else { break }
            let home = slot(of: pages[i])
            if (i - home) & mask >= (i - hole) & mask {
                pages[hole] = pages[i]
                stamps[hole] = stamps[i]
                hole = i
            }
        }
        pages[hole] = Self.empty
        return taken
    }

    private func find(_ page: Int) -> Int? {
        var i = slot(of: page)
        while pages[i] != Self.empty {
            if pages[i] == page { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Fibonacci hashing: neighbouring pages (a sequential guest) spread over the table.
    @inline(__always) private func slot(of page: Int) -> Int {
        Int(truncatingIfNeeded: (UInt64(bitPattern: Int64(page)) &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }
}

private extension Int {
    var nextPowerOfTwo: Int { self <= 1 ? 1 : 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount) }
}
