/// A set of page indices as one flag per page in a flat array: constant-time,
/// allocated once, nothing per page. Threading: its owner's thread only.
final class PageSet {
    let pageCount: Int
    private let flags: UnsafeMutablePointer<Bool>

    init(pageCount: Int) {
        self.pageCount = pageCount
        flags = .allocate(capacity: pageCount)
        flags.initialize(repeating: false, count: pageCount)
    }

    deinit { flags.deallocate() }

    @inline(__always) func contains(_ page: Int) -> Bool { flags[page] }
    @inline(__always) func insert(_ page: Int) { flags[page] = true }
    @inline(__always) func insert(first: Int, count: Int) { (flags + first).update(repeating: true, count: count) }

    func removeAll() { flags.update(repeating: false, count: pageCount) }

    /// How many pages are in the set (a scan: not for the hot path).
    var count: Int { (0..<pageCount).reduce(0) { $0 + (flags[$1] ? 1 : 0) } }

    /// The members in ascending order.
    var sorted: [Int] { (0..<pageCount).filter { flags[$0] } }
}
