import Foundation
import MigrateAgent
import SyntheticGuest
import Testing

@Suite("Arena")
struct ArenaTests {
    @Test("two views of one memfd, page arithmetic")
    func layout() throws {
        let pageSize = Arena.systemPageSize
        let arena = try Arena(size: 8 * pageSize, name: "layout")
        #expect(arena.pageCount == 8)
        #expect(arena.pageSize == pageSize)
        #expect(arena.guestBase != arena.ioBase)
        #expect(arena.guestPage(3) == arena.guestBase + 3 * pageSize)
        #expect(arena.ioPage(5) == arena.ioBase + 5 * pageSize)
    }

    @Test("pageIndex(ofGuestAddress:) maps the guest view only")
    func pageIndex() throws {
        let pageSize = Arena.systemPageSize
        let arena = try Arena(size: 4 * pageSize, name: "index")
        let base = UInt64(UInt(bitPattern: arena.guestBase))
        #expect(arena.pageIndex(ofGuestAddress: base) == 0)
        #expect(arena.pageIndex(ofGuestAddress: base + UInt64(pageSize) - 1) == 0)
        #expect(arena.pageIndex(ofGuestAddress: base + UInt64(pageSize)) == 1)
        #expect(arena.pageIndex(ofGuestAddress: base + UInt64(4 * pageSize) - 1) == 3)
        #expect(arena.pageIndex(ofGuestAddress: base + UInt64(4 * pageSize)) == nil)
        #expect(arena.pageIndex(ofGuestAddress: base - 1) == nil)
        #expect(arena.pageIndex(ofGuestAddress: UInt64(UInt(bitPattern: arena.ioBase))) == nil)
    }

    @Test("mapIOView maps a filled arena's io view: reading it afterwards takes no page faults")
    func mappedIOView() throws {
        let pages = 512
        // Filled through the guest view, as the source's guest fills its arena: the io view is not mapped yet.
        func filled(_ name: String) throws -> Arena {
            let arena = try Arena(size: pages * Arena.systemPageSize, name: name)
            for page in 0..<pages { PageContent.fill(arena.guestPage(page), index: page, version: 1, pageSize: arena.pageSize) }
            return arena
        }
        /// Minor faults this thread took reading one word of every io-view page.
        func faultsReading(_ arena: Arena) -> Int {
            var before = rusage(), after = rusage()
            getrusage(__rusage_who_t(1) /* RUSAGE_THREAD */, &before)
            var sum: UInt64 = 0
            for page in 0..<pages { sum &+= arena.ioPage(page).load(as: UInt64.self) }
            getrusage(__rusage_who_t(1), &after)
            #expect(sum != 0)
            return after.ru_minflt - before.ru_minflt
        }
        let mapped = try filled("populate")
        #expect(mapped.mapIOView() == nil)
        #expect(faultsReading(mapped) == 0)
        // The control: an io view left unmapped faults when read (16 pages per fault-around).
        #expect(faultsReading(try filled("populate-control")) > 0)
    }

    @Test("io-view writes show in the guest view; zap keeps them, a punched hole drops them")
    func sharedViews() throws {
        let arena = try Arena(size: 4 * Arena.systemPageSize, name: "views")
        for page in 0..<4 { PageContent.fill(arena.ioPage(page), index: page, version: 1, pageSize: arena.pageSize) }
        // No userfaultfd here, but guest memory is still only touched from a thread of our own.
        let first = DeadlineThread("views-guest") { [arena] in (0..<4).compactMap { readProblem(arena, page: $0, version: 1) } }
        #expect(first.join(until: .now() + 10) == [])

        try arena.zapGuestView(page: 1)
        try arena.punchHole(page: 2)
        let second = DeadlineThread("views-guest-2") { [arena] in
            [readProblem(arena, page: 1, version: 1),
             PageContent.describe(arena.guestPage(2), pageSize: arena.pageSize)]
        }
        #expect(second.join(until: .now() + 10) == [nil, "an all-zero page"])
        #expect(PageContent.verify(arena.ioPage(1), index: 1, version: 1, pageSize: arena.pageSize))
    }
}

/// Reads page `page` of the guest view (`PageContent.verify` reads every word and its
/// result is used, so the access stays); nil when it holds `version`, else what it held.
private func readProblem(_ arena: Arena, page: Int, version: UInt32) -> String? {
    let address = arena.guestPage(page)
    if PageContent.verify(address, index: page, version: version, pageSize: arena.pageSize) { return nil }
    return "read of page \(page): expected version \(version), found " + PageContent.describe(address, pageSize: arena.pageSize)
}
