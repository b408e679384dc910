import MigrateAgent
import SyntheticGuest
import Testing

@Suite("Synthetic guest: hot set and touched pages")
struct HotSetTests {
    @Test("the hot set is about 10% of the pages, the same for every caller, and depends on the seed")
    func hotSet() {
        let pages = HotSet().pages(count: 10_000)
        #expect((900...1100).contains(pages.count), "\(pages.count) hot pages of 10000")
        #expect(HotSet().pages(count: 10_000) == pages)
        #expect(HotSet(seed: 1).pages(count: 10_000) != pages)
        #expect(pages.allSatisfy(HotSet().contains))
    }

    @Test("hotset pattern: each thread's hot pages are its own pages in the shared hot set")
    func hotsetPattern() {
        let threads = 4, pageCount = 4_000
        let hot = HotSet()
        for t in 0..<threads {
            let pages = Array(stride(from: t, to: pageCount, by: threads))
            let order = AccessPattern.hotset.order(pages: pages, seed: 99 &+ UInt64(t))
            #expect(order.count == pages.count)
            let inHot = order.filter(hot.contains).count
            #expect(Double(inHot) / Double(order.count) > 0.85, "thread \(t): \(inHot) of \(order.count) accesses hot")
            #expect(Set(order).isSubset(of: Set(pages)))
        }
    }

    @Test("an access workload counts accesses and reports the touched pages once")
    func takeTouched() throws {
        let arena = try Arena(size: 64 * Arena.systemPageSize, name: "touched")
        let guest = SourceGuest(arena: arena, threads: 2, pattern: .sequential)
        guest.populate()
        #expect(guest.takeTouched() == [], "populating is not the workload")
        guest.resume()
        var seen = Set<Int>()
        let deadline = ContinuousClock.now + .seconds(10)
        while seen.count < 64 && ContinuousClock.now < deadline { seen.formUnion(guest.takeTouched()) }
        guest.pause()
        seen.formUnion(guest.takeTouched())
        #expect(seen == Set(0..<64))
        #expect(guest.accesses >= 64)
        #expect(guest.takeTouched() == [], "taken pages are cleared")
    }

    @Test("without a pattern the source guest keeps its old behaviour: no accesses, nothing touched")
    func defaultUnchanged() throws {
        let arena = try Arena(size: 8 * Arena.systemPageSize, name: "touched-default")
        let guest = SourceGuest(arena: arena, threads: 2)
        guest.populate()
        guest.resume()
        guest.pause()
        #expect(guest.accesses == 0)
        #expect(guest.takeTouched() == [])
    }

    @Test("a random permutation visits each position once, depends on the seed, and is the same every time",
          arguments: [0, 1, 2, 3, 5, 64, 1000, 4097])
    func randomPermutation(count: Int) {
        let p = RandomPermutation(count: count, seed: 7)
        let positions = (0..<count).map { p[$0] }
        #expect(positions.sorted() == Array(0..<count))
        #expect((0..<count).map { RandomPermutation(count: count, seed: 7)[$0] } == positions)
        if count >= 64 {
            #expect((0..<count).map { RandomPermutation(count: count, seed: 8)[$0] } != positions)
            #expect(positions != Array(0..<count), "not the identity")
        }
    }

    @Test("a thread's walk visits the pages the listed order gives, for every pattern")
    func walksMatchTheirOrder() {
        let threads = 3, pageCount = 1_000
        for pattern in AccessPattern.allCases {
            for t in 0..<threads {
                let pages = Array(stride(from: t, to: pageCount, by: threads))
                let walk = pattern.walk(first: t, stride: threads, count: pages.count, seed: 5)
                #expect((0..<walk.count).map { walk[$0] } == pattern.order(pages: pages, seed: 5), "\(pattern), thread \(t)")
            }
        }
    }
}
