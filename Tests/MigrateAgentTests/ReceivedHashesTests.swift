@testable import MigrateAgent
import SyntheticGuest
import Testing
import Wire

/// The destination's running digest of received pages, which must give the
/// digest of the bytes received. Plain memory: no kernel feature is involved.
@Suite("Received hashes: the running digest")
struct ReceivedHashesTests {
    static let pages = 200

    /// An arena holding version 1 of every page, and the expected digest of it.
    func filledArena(_ name: String) throws -> (Arena, UInt128) {
        let arena = try Arena(size: Self.pages * Arena.systemPageSize, name: name)
        for page in 0..<Self.pages where page % 7 != 0 {  // every seventh page stays zero
            PageContent.fill(arena.ioPage(page), index: page, version: 1, pageSize: arena.pageSize)
        }
        let digest = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size), pageSize: arena.pageSize)
        return (arena, digest.value)
    }

    /// Records every page once: zero pages as zeros, odd pages on the worker's path.
    func recordAll(_ hashes: ReceivedHashes, _ arena: Arena) {
        for page in 0..<Self.pages {
            if page % 7 == 0 { hashes.recordZero(page) }
            else if page % 2 == 1 { hashes.recordOnWorker(page, bytes: arena.ioPage(page)) }
            else { hashes.record(page, bytes: arena.ioPage(page)) }
        }
    }

    @Test("the digest is that of the bytes received, recorded on the loop or the worker; a held copy hashes as it is")
    func digestOfReceived() throws {
        let (arena, expected) = try filledArena("hashes-digest")
        let hashes = ReceivedHashes(pageCount: Self.pages, pageSize: arena.pageSize, arena: arena)
        recordAll(hashes, arena)
        #expect(hashes.digest() == expected)
        #expect(hashes.heldHash(of: 3) == PageHash.hash(UnsafeRawBufferPointer(start: arena.ioPage(3), count: arena.pageSize)))
    }

    @Test("the same bytes again (a demand answer and the stream's copy) are counted once")
    func sameBytesAgain() throws {
        let (arena, expected) = try filledArena("hashes-again")
        let hashes = ReceivedHashes(pageCount: Self.pages, pageSize: arena.pageSize, arena: arena)
        recordAll(hashes, arena)
        hashes.record(10, bytes: arena.ioPage(10))
        hashes.recordOnWorker(11, bytes: arena.ioPage(11))
        hashes.recordZero(14)
        #expect(hashes.digest() == expected)
    }

    @Test("a copy forgotten before it is replaced (pre-copy rounds, a stale page refreshed) leaves the digest")
    func forgetBeforeReplacing() throws {
        let (arena, _) = try filledArena("hashes-forget")
        let hashes = ReceivedHashes(pageCount: Self.pages, pageSize: arena.pageSize, arena: arena)
        recordAll(hashes, arena)
        for page in [10, 11, 14] {  // 14 was a zero page
            hashes.forget(page)
            PageContent.fill(arena.ioPage(page), index: page, version: 3, pageSize: arena.pageSize)
            hashes.record(page, bytes: arena.ioPage(page))
        }
        hashes.forget(12)
        arena.ioPage(12).initializeMemory(as: UInt8.self, repeating: 0, count: arena.pageSize)
        hashes.recordZero(12)
        hashes.forget(199)
        hashes.forget(199)  // twice: the second finds nothing to take back
        hashes.record(199, bytes: arena.ioPage(199))
        let now = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size), pageSize: arena.pageSize)
        #expect(hashes.digest() == now.value)
    }
}
