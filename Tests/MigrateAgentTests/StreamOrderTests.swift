@testable import MigrateAgent
import Testing

@Suite("stream orders")
struct StreamOrderTests {
    @Test("head first: the head in its order, then every other page ascending")
    func headFirst() {
        #expect(StreamOrder.headFirst([5, 2, 7], pageCount: 8) == [5, 2, 7, 0, 1, 3, 4, 6])
    }

    @Test("a repeated head page stays where it first appears")
    func duplicates() {
        #expect(StreamOrder.headFirst([3, 1, 3, 0, 1], pageCount: 5) == [3, 1, 0, 2, 4])
    }

    @Test("no head is address order; a head of every page is the head")
    func edges() {
        #expect(StreamOrder.headFirst([], pageCount: 4) == [0, 1, 2, 3])
        #expect(StreamOrder.headFirst([3, 2, 1, 0], pageCount: 4) == [3, 2, 1, 0])
        #expect(StreamOrder.headFirst([], pageCount: 0) == [])
    }

    @Test("the result is always a permutation of the arena")
    func permutation() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let pageCount = Int.random(in: 1...300, using: &rng)
            let head = (0..<Int.random(in: 0...400, using: &rng)).map { _ in Int.random(in: 0..<pageCount, using: &rng) }
            let order = StreamOrder.headFirst(head, pageCount: pageCount)
            #expect(order.sorted() == Array(0..<pageCount))
            var seen = Set<Int>()
            let expectedHead = head.filter { seen.insert($0).inserted }
            #expect(Array(order.prefix(expectedHead.count)) == expectedHead)
            #expect(order.dropFirst(expectedHead.count).elementsEqual(order.dropFirst(expectedHead.count).sorted()))
        }
    }
}
