@testable import MigrateAgent
import Testing
import Wire

/// Records the runs a stream queues; a unit double of the bulk connection
/// (the order logic is not about the network).
final class RecordingSink: PageSink {
    var runs: [(first: Int, count: Int)] = []
    /// Each run's frame kind and whether it carried the pages' bytes.
    var kinds: [(FrameKind, bytes: Int)] = []
    var backlog = 0
    func send(kind: FrameKind, flags: UInt16, count: UInt32, arg: UInt64, payload: UnsafeRawBufferPointer?) {
        runs.append((Int(arg), Int(count)))
        kinds.append((kind, payload?.count ?? 0))
    }
    func flush() {}
    var pages: [Int] { runs.flatMap { $0.first..<($0.first + $0.count) } }
}

@Suite("PageStream order")
struct PageStreamTests {
    private func arena(pages: Int) throws -> Arena { try Arena(size: pages * Arena.systemPageSize) }

    @Test("streams the whole arena once in address order, skipping pages sent on demand")
    func wholeArena() throws {
        let arena = try arena(pages: 10)
        let skip = PageSet(pageCount: 10)
        skip.insert(3)
        let stream = PageStream(arena: arena, pages: nil, pagesPerFrame: 4, skip: skip)
        let sink = RecordingSink()
        #expect(stream.pump(sink, highWater: 1 << 30))
        #expect(sink.pages == [0, 1, 2, 4, 5, 6, 7, 8, 9])
        #expect(sink.runs.count == 3)  // 0-2, 4-7, 8-9: runs break at skipped pages and at 4 pages
        #expect(stream.finished && skip.isFull)
    }

    @Test("all-zero pages go as zeroPages runs without their bytes, the others as pages")
    func zeroRuns() throws {
        let arena = try arena(pages: 8)
        for page in [2, 3, 6] { arena.ioPage(page).storeBytes(of: 0xA5, toByteOffset: arena.pageSize - 1, as: UInt8.self) }
        let stream = PageStream(arena: arena, pages: nil, pagesPerFrame: 8, skip: PageSet(pageCount: 8))
        let sink = RecordingSink()
        #expect(stream.pump(sink, highWater: 1 << 30))
        #expect(sink.runs.map { [$0.first, $0.count] } == [[0, 2], [2, 2], [4, 2], [6, 1], [7, 1]])
        #expect(sink.kinds.map(\.0) == [.zeroPages, .pages, .zeroPages, .pages, .zeroPages])
        #expect(sink.kinds.map(\.bytes) == [0, 2 * arena.pageSize, 0, arena.pageSize, 0])
        #expect(stream.pagesSent == 8 && stream.zeroPagesSent == 5)
    }

    @Test("after a demand request it continues behind the requested page, then comes back for the rest")
    func followsDemand() throws {
        let arena = try arena(pages: 12)
        let skip = PageSet(pageCount: 12)
        let stream = PageStream(arena: arena, pages: nil, pagesPerFrame: 2, skip: skip)
        let sink = RecordingSink()
        sink.backlog = 1  // a full socket: nothing goes out until the backlog drops
        #expect(!stream.pump(sink, highWater: 1))
        #expect(sink.pages.isEmpty)
        skip.insert(first: 6, count: 2)  // the demand server sent pages 6 and 7
        stream.follow(to: 8)
        sink.backlog = 0
        #expect(stream.pump(sink, highWater: 1 << 30))
        #expect(sink.pages == [8, 9, 10, 11, 0, 1, 2, 3, 4, 5])
        #expect(skip.isFull)
    }

    @Test("a request for the last page wraps the cursor to the start")
    func followWraps() throws {
        let arena = try arena(pages: 4)
        let skip = PageSet(pageCount: 4)
        let stream = PageStream(arena: arena, pages: nil, pagesPerFrame: 8, skip: skip)
        skip.insert(3)
        stream.follow(to: 4)
        let sink = RecordingSink()
        #expect(stream.pump(sink, highWater: 1 << 30))
        #expect(sink.pages == [0, 1, 2])
    }

    @Test("an explicit order is kept as given and not moved by demand")
    func explicitOrder() throws {
        let arena = try arena(pages: 8)
        let skip = PageSet(pageCount: 8)
        let stream = PageStream(arena: arena, pages: [5, 6, 1, 2, 3], pagesPerFrame: 8, skip: skip)
        skip.insert(2)
        stream.follow(to: 7)
        let sink = RecordingSink()
        #expect(stream.pump(sink, highWater: 1 << 30))
        #expect(sink.pages == [5, 6, 1, 3])
        #expect(sink.runs.count == 3)
    }
}

@Suite("PageStream head")
struct PageStreamHeadTests {
    @Test("the head goes first in its order, then the rest of the arena; demand moves the cursor only after the head")
    func headFirst() throws {
        let arena = try Arena(size: 10 * Arena.systemPageSize)
        let skip = PageSet(pageCount: 10)
        let stream = PageStream(arena: arena, pages: nil, head: [7, 8, 2, 5], pagesPerFrame: 4, skip: skip)
        skip.insert(5)  // sent on demand before the stream reached it
        stream.follow(to: 6)  // ignored: the head is not done
        let sink = RecordingSink()
        #expect(stream.pump(sink, highWater: 1 << 30))
        #expect(sink.pages == [7, 8, 2, 0, 1, 3, 4, 6, 9])
        #expect(stream.headPagesSent == 3 && stream.headDone)
        #expect(sink.runs.first! == (7, 2))
    }
}
