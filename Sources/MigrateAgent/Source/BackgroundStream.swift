import Wire

/// The source's background stream: every page the destination has not been
/// sent yet, in runs of consecutive pages, so the migration finishes even if
/// the guest never touches most pages. Runs straight from the arena to the
/// socket; pages already sent on demand are skipped.
/// Threading: the source's loop thread only.
final class BackgroundStream {
    private let arena: Arena
    private let sent: UnsafeMutablePointer<Bool>
    private let pagesPerFrame: Int
    private var cursor = 0
    private(set) var pagesSent = 0
    private(set) var finished = false

    init(arena: Arena, pagesPerFrame: Int) {
        self.arena = arena
        self.pagesPerFrame = max(1, pagesPerFrame)
        sent = .allocate(capacity: arena.pageCount)
        sent.initialize(repeating: false, count: arena.pageCount)
    }

    deinit { sent.deallocate() }

    /// Records a page sent on demand, so the stream skips it.
    func markSent(_ page: Int) { sent[page] = true }

    /// Queues runs on `connection` until its backlog reaches `highWater` or every page is queued.
    /// Returns true when the last page has been queued.
    func pump(_ connection: TCPConnection, highWater: Int) -> Bool {
        while connection.backlog < highWater && cursor < arena.pageCount {
            while cursor < arena.pageCount && sent[cursor] { cursor += 1 }
            guard cursor < arena.pageCount else { break }
            var end = cursor
            while end < arena.pageCount && end - cursor < pagesPerFrame && !sent[end] {
                sent[end] = true
                end += 1
            }
            let count = end - cursor
            connection.send(kind: .pages, count: UInt32(count), arg: UInt64(cursor),
                            payload: UnsafeRawBufferPointer(start: arena.ioPage(cursor), count: count * arena.pageSize))
            pagesSent += count
            cursor = end
        }
        connection.flush()
        finished = cursor >= arena.pageCount
        return finished
    }
}
