/// A VMM's guest memory as the fault path sees it: its regions, in the VMM's
/// address space, laid over the source's image page by page (a region's file
/// offset says where its pages are in the image). Regions may leave holes in
/// the address space (x86's MMIO gap); page indices have none.
///
/// Threading: immutable; any thread.
public final class VMMRegions: GuestPageSpace, @unchecked Sendable {
    public let pageSize: Int
    public let pageCount: Int
    /// Each region as image pages `first ..< first + count` at guest address `base`, in image order.
    private let runs: [(first: Int, count: Int, base: UInt64)]

    /// `regions` must have passed `UffdHandoverReceiver.validate`.
    public init(_ regions: [GuestRegion]) {
        let pageSize = regions.first?.pageSize ?? Arena.systemPageSize
        self.pageSize = pageSize
        runs = regions.map { (first: Int($0.offset) / pageSize, count: Int($0.size) / pageSize, base: $0.baseHostVirtAddr) }
            .sorted { $0.first < $1.first }
        pageCount = runs.reduce(0) { $0 + $1.count }
    }

    @inline(__always) private func run(containing page: Int) -> (first: Int, count: Int, base: UInt64) {
        for run in runs where page >= run.first && page < run.first + run.count { return run }
        preconditionFailure("page \(page) is outside every region")  // indices are checked by the wire parser
    }

    public func guestPage(_ index: Int) -> UnsafeMutableRawPointer {
        let run = run(containing: index)
        return UnsafeMutableRawPointer(bitPattern: UInt(run.base) + UInt((index - run.first) * pageSize))!
    }

    public func pageIndex(ofGuestAddress address: UInt64) -> Int? {
        for run in runs where address >= run.base && address < run.base + UInt64(run.count * pageSize) {
            return run.first + Int((address - run.base) / UInt64(pageSize))
        }
        return nil
    }

    public func contiguousPages(from first: Int, limit: Int) -> Int {
        let run = run(containing: first)
        return min(limit, run.first + run.count - first)
    }

    /// The regions' address ranges, for unregistering them at the end.
    var addressRanges: [(start: UnsafeMutableRawPointer, length: Int)] {
        runs.map { (UnsafeMutableRawPointer(bitPattern: UInt($0.base))!, $0.count * pageSize) }
    }
}
