/// Notes the pages the destination requests on demand, each once, in the order
/// of its first request (the recorded `AccessTrace`), and counts how many of
/// them a loaded prefetch trace had predicted. Pages the background stream
/// sends are not noted: the trace is what the guest asked for.
///
/// Hot path (every demand-requested page): a flag test, a store into a buffer
/// allocated once for every page of the arena, an increment; no lock, no
/// allocation.
/// Threading: the source's loop thread only (the demand server calls it);
/// `pages` after the loop has ended.
final class AccessTraceRecorder {
    private let requested: PageSet
    /// Room for every page: each is appended at most once.
    private let order: UnsafeMutablePointer<UInt32>
    /// The prefetch trace's pages (nil: none loaded).
    private let predicted: PageSet?
    /// Pages noted so far.
    private(set) var count = 0
    /// Noted pages that the prefetch trace listed.
    private(set) var predictedHits = 0

    /// `predicted`: the pages of a prefetch trace, all in `0..<pageCount`.
    init(pageCount: Int, predicted: [Int]?) {
        precondition(pageCount <= AccessTrace.maxPageCount, "a trace holds at most \(AccessTrace.maxPageCount) pages")
        requested = PageSet(pageCount: pageCount)
        order = .allocate(capacity: pageCount)
        self.predicted = predicted.map { pages in
            let set = PageSet(pageCount: pageCount)
            for page in pages { set.insert(page) }
            return set
        }
    }

    deinit { order.deallocate() }

    /// A demand request for `page` (already checked against the arena).
    @inline(__always) func noteRequest(_ page: Int) {
        guard !requested.contains(page) else { return }
        requested.insert(page)
        order[count] = UInt32(truncatingIfNeeded: page)
        count += 1
        if let predicted, predicted.contains(page) { predictedHits += 1 }
    }

    /// The pages noted, in order of first request.
    var pages: [Int] { (0..<count).map { Int(order[$0]) } }
}
