import Wire

/// Where a `PageStream` queues its frames: the bulk connection (a recording sink in unit tests).
protocol PageSink: AnyObject {
    /// Bytes queued and not yet written.
    var backlog: Int { get }
    func send(kind: FrameKind, flags: UInt16, count: UInt32, arg: UInt64, payload: UnsafeRawBufferPointer?)
    func flush()
}

extension TCPConnection: PageSink {}

/// Streams pages from the arena to a connection in runs of consecutive pages
/// (header plus a pointer into the arena: no copy), with backpressure: it
/// queues until the connection's backlog reaches a high-water mark and is
/// pumped again when writes complete. Used for every pre-copy round and for
/// the post-copy background stream, which skips pages already sent on demand.
///
/// A stream over the whole arena with a skip set may start with a `head`
/// (the hot set, a recorded trace: pages in the order they are wanted), then
/// goes round the arena from a cursor the guest's demand requests can move
/// (`follow`): after a request for page p it continues at p + 1, where a guest
/// reading forwards goes next, and comes back for what it jumped over. It is
/// finished when every page is in the skip set. All-zero pages go as
/// `zeroPages` frames, a header without payload; the destination maps a zero
/// page for them. Threading: the source's loop thread only.
final class PageStream {
    private let arena: Arena
    private let pages: [Int]?
    private let flags: PageFlags
    private let pagesPerFrame: Int
    /// Pages to skip (sent on demand meanwhile), shared with the demand server; the
    /// stream adds what it sends.
    private let skip: PageSet?
    private var cursor = 0
    /// Pages sent first, in this order, before the whole arena (with a skip set only).
    private let head: [Int]
    private var headCursor = 0
    private(set) var pagesSent = 0
    /// Pages of `head` this stream sent (the rest had gone on demand).
    private(set) var headPagesSent = 0
    /// Of `pagesSent`, the all-zero pages sent as `zeroPages` frames.
    private(set) var zeroPagesSent = 0

    /// Streams `pages` in this order, or the whole arena when nil (then `head` first).
    init(arena: Arena, pages: [Int]?, head: [Int] = [], flags: PageFlags = [], pagesPerFrame: Int, skip: PageSet? = nil) {
        precondition(head.isEmpty || (pages == nil && skip != nil), "a head goes before a whole-arena stream with a skip set")
        self.arena = arena
        self.pages = pages
        self.head = head
        self.flags = flags
        self.pagesPerFrame = max(1, pagesPerFrame)
        self.skip = skip
    }

    /// Whether every page of the head was sent (here or on demand).
    var headDone: Bool { headCursor >= head.count }

    private var count: Int { pages?.count ?? arena.pageCount }
    @inline(__always) private func page(at i: Int) -> Int { pages?[i] ?? i }
    /// Round the whole arena, finished when the skip set is full.
    private var circular: Bool { pages == nil && skip != nil }

    var finished: Bool { circular ? skip!.isFull : cursor >= count }

    /// A demand request for pages up to `page` (exclusive end) was served:
    /// continue the stream there. Only a stream round the whole arena follows.
    func follow(to end: Int) {
        guard circular, headDone else { return }
        cursor = end < count ? end : 0
    }

    /// Queues runs until the backlog reaches `highWater` or every page is queued,
    /// then flushes. Returns true once the last page has been queued.
    func pump(_ connection: some PageSink, highWater: Int) -> Bool {
        while connection.backlog < highWater && !finished && !headDone {
            pumpHead(connection)
        }
        while connection.backlog < highWater && !finished {
            if circular {
                // Not finished: some page is not in the skip set, so this ends.
                while skip!.contains(cursor) { cursor = cursor + 1 < count ? cursor + 1 : 0 }
            } else {
                while cursor < count, let skip, skip.contains(page(at: cursor)) { cursor += 1 }
                guard cursor < count else { break }
            }
            let first = page(at: cursor)
            var n = 1
            while cursor + n < count, n < pagesPerFrame, page(at: cursor + n) == first + n, !(skip?.contains(first + n) ?? false) { n += 1 }
            skip?.insert(first: first, count: n)
            send(first: first, count: n, to: connection)
            cursor += n
            if circular && cursor == count { cursor = 0 }
        }
        connection.flush()
        return finished
    }

    /// Queues the next run of the head: consecutive head entries with consecutive pages.
    private func pumpHead(_ connection: some PageSink) {
        let skip = skip!
        while headCursor < head.count, skip.contains(head[headCursor]) { headCursor += 1 }
        guard headCursor < head.count else { return }
        let first = head[headCursor]
        var n = 1
        while headCursor + n < head.count, n < pagesPerFrame, head[headCursor + n] == first + n, !skip.contains(first + n) { n += 1 }
        skip.insert(first: first, count: n)
        send(first: first, count: n, to: connection)
        headPagesSent += n
        headCursor += n
    }

    /// Queues `count` pages from `first`: runs of all-zero pages as `zeroPages`
    /// frames, the others as `pages` frames referencing the arena.
    private func send(first: Int, count: Int, to connection: some PageSink) {
        let isZero = { (page: Int) in self.arena.ioPage(page).isZeroPage(byteCount: self.arena.pageSize) }
        var start = 0
        var zero = isZero(first)
        while start < count {
            var end = start + 1
            var nextZero = zero  // the page that ends this run starts the next: looked at once
            while end < count {
                nextZero = isZero(first + end)
                if nextZero != zero { break }
                end += 1
            }
            let n = end - start
            if zero {
                connection.send(kind: .zeroPages, flags: 0, count: UInt32(n), arg: UInt64(first + start), payload: nil)
                zeroPagesSent += n
            } else {
                connection.send(kind: .pages, flags: flags.rawValue, count: UInt32(n), arg: UInt64(first + start),
                                payload: UnsafeRawBufferPointer(start: arena.ioPage(first + start), count: n * arena.pageSize))
            }
            start = end
            zero = nextZero
        }
        pagesSent += count
    }
}

extension UnsafeMutableRawPointer {
    /// Whether the `byteCount` bytes here (a multiple of 8) are all zero. Stops at
    /// the first non-zero 64-byte block, so a page with data costs a few loads.
    func isZeroPage(byteCount: Int) -> Bool {
        let words = UnsafeRawPointer(self).assumingMemoryBound(to: UInt64.self)
        var i = 0
        let n = byteCount / 8
        while i < n {
            var any: UInt64 = 0
            for k in i..<min(i + 8, n) { any |= words[k] }
            if any != 0 { return false }
            i += 8
        }
        return true
    }
}
