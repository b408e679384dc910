/// Orders in which the background stream (`PageStream(pages:)`) sends an
/// arena's pages. The order is the source's business: the destination accepts
/// pages in any order, so any permutation of the arena is a valid stream.
///
/// Pure functions of their arguments, built once before the stream starts
/// (not on a hot path). Threading: any thread.
enum StreamOrder {
    /// `head` first, in its order, each page once (a repeat is dropped where it
    /// repeats), then every other page of `0..<pageCount` in ascending order.
    /// The result is a permutation of the arena, so the stream still sends every
    /// page. Callers refuse out-of-range pages before (a trace file, a tracker's
    /// scores); one here is a programming error.
    ///
    /// Used for a prefetch trace (`--prefetch-trace`), and meant for any
    /// "these pages first" order, such as a working-set tracker's hot pages.
    static func headFirst(_ head: [Int], pageCount: Int) -> [Int] {
        precondition(pageCount >= 0, "StreamOrder.headFirst: negative page count \(pageCount)")
        var placed = [Bool](repeating: false, count: pageCount)
        var order: [Int] = []
        order.reserveCapacity(pageCount)
        for page in head {
            precondition((0..<pageCount).contains(page), "StreamOrder.headFirst: page \(page) outside 0..<\(pageCount)")
            guard !placed[page] else { continue }
            placed[page] = true
            order.append(page)
        }
        for page in 0..<pageCount where !placed[page] { order.append(page) }
        return order
    }
}
