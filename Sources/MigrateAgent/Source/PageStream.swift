import Wire

/// Streams pages from the arena to a connection in runs of consecutive pages
/// (header plus a pointer into the arena: no copy), with backpressure: it
/// queues until the connection's backlog reaches a high-water mark and is
/// pumped again when writes complete. Used for every pre-copy round and for
/// the post-copy background stream, which skips pages already sent on demand.
/// Threading: the source's loop thread only.
final class PageStream {
    private let arena: Arena
    private let pages: [Int]?
    private let flags: PageFlags
    private let pagesPerFrame: Int
    /// Pages to skip (sent on demand meanwhile), shared with the demand server; the
    /// stream adds what it sends.
    private let skip: PageSet?
    private var cursor = 0
    private(set) var pagesSent = 0

    /// Streams `pages` in this order, or the whole arena when nil.
    init(arena: Arena, pages: [Int]?, flags: PageFlags = [], pagesPerFrame: Int, skip: PageSet? = nil) {
        self.arena = arena
        self.pages = pages
        self.flags = flags
        self.pagesPerFrame = max(1, pagesPerFrame)
        self.skip = skip
    }

    private var count: Int { pages?.count ?? arena.pageCount }
    @inline(__always) private func page(at i: Int) -> Int { pages?[i] ?? i }

    var finished: Bool { cursor >= count }

    /// Queues runs until the backlog reaches `highWater` or every page is queued,
    /// then flushes. Returns true once the last page has been queued.
    func pump(_ connection: TCPConnection, highWater: Int) -> Bool {
        while connection.backlog < highWater && cursor < count {
            while cursor < count, let skip, skip.contains(page(at: cursor)) { cursor += 1 }
            guard cursor < count else { break }
            let first = page(at: cursor)
            var n = 1
            while cursor + n < count, n < pagesPerFrame, page(at: cursor + n) == first + n, !(skip?.contains(first + n) ?? false) { n += 1 }
            skip?.insert(first: first, count: n)
            connection.send(kind: .pages, flags: flags.rawValue, count: UInt32(n), arg: UInt64(first),
                            payload: UnsafeRawBufferPointer(start: arena.ioPage(first), count: n * arena.pageSize))
            pagesSent += n
            cursor += n
        }
        connection.flush()
        return finished
    }
}
