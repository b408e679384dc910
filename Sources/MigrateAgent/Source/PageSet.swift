/// A set of page indices as one flag per page in a flat array: constant-time,
/// allocated once, nothing per page; it keeps its own count. Threading: its
/// owner's thread only.
final class PageSet {
    let pageCount: Int
    private let flags: UnsafeMutablePointer<Bool>
    /// How many pages are in the set.
    private(set) var count = 0

    init(pageCount: Int) {
        self.pageCount = pageCount
        flags = .allocate(capacity: pageCount)
        flags.initialize(repeating: false, count: pageCount)
    }

    deinit { flags.deallocate() }

    @inline(__always) func contains(_ page: Int) -> Bool { flags[page] }

    @inline(__always) func insert(_ page: Int) {
        if !flags[page] {
            flags[page] = true
            count += 1
        }
    }

    @inline(__always) func insert(first: Int, count n: Int) {
        for page in first..<(first + n) { insert(page) }
    }

    /// Every page is in the set.
    var isFull: Bool { count == pageCount }

    func removeAll() {
        flags.update(repeating: false, count: pageCount)
        count = 0
    }

    /// The members in ascending order.
    var sorted: [Int] { (0..<pageCount).filter { flags[$0] } }
}
