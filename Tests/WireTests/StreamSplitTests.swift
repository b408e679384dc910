import Testing
import Wire

@Suite("Any split of the byte stream decodes to the same messages")
struct StreamSplitTests {
    let small = sampleMessages
    var smallStream: [UInt8] { small.flatMap { $0.encoded() } }

    @Test func everySplitPointOfASmallStream() throws {
        let stream = smallStream
        for cut in 0...stream.count {
            #expect(try decodeAll([stream[..<cut], stream[cut...]]) == small, "split at \(cut)")
        }
    }

    @Test func byteByByte() throws {
        let stream = smallStream
        #expect(try decodeAll(stream.indices.map { stream[$0...$0] }) == small)
    }

    @Test func rawBufferFeedMatchesSequenceFeed() throws {
        var decoder = StreamDecoder(limits: testLimits)
        var messages: [Message] = []
        for message in small {
            message.encoded().withUnsafeBytes { decoder.feed($0) }
            while let next = try decoder.nextMessage() { messages.append(next) }
        }
        #expect(messages == small)
    }

    @Test(arguments: [1, 2, 3])
    func randomChunkingsOfALargeStream(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let messages = (0..<2_000).map { _ in randomMessage(&rng) }
        let stream = messages.flatMap { $0.encoded() }
        for _ in 0..<10 {
            var chunks: [ArraySlice<UInt8>] = []
            var offset = 0
            while offset < stream.count {
                // Mostly small reads with the occasional large one, as a socket would give.
                let size = Bool.random(using: &rng)
                    ? Int.random(in: 1...64, using: &rng) : Int.random(in: 1...20_000, using: &rng)
                let end = min(stream.count, offset + size)
                chunks.append(stream[offset..<end])
                offset = end
            }
            #expect(try decodeAll(chunks) == messages)
        }
    }

    private func randomMessage(_ rng: inout SeededGenerator) -> Message {
        let pageCount = testLimits.pageCount
        func run() -> (UInt64, Int) {
            let count = Int.random(in: 1...testLimits.maxPagesPerFrame, using: &rng)
            return (UInt64.random(in: 0...(pageCount - UInt64(count)), using: &rng), count)
        }
        switch Int.random(in: 0..<10, using: &rng) {
        case 0:
            let (first, count) = run()
            let hashes = Bool.random(using: &rng) ? (0..<count).map { _ in UInt128(rng.next()) << 64 | UInt128(rng.next()) } : []
            return .request(first: first, count: count, hashes: hashes)
        case 1, 2, 3:
            let (first, count) = run()
            let bytes = (0..<count * testPageSize).map { _ in UInt8.random(in: 0...255, using: &rng) }
            return .pages(first: first, count: count, flags: PageFlags(rawValue: UInt16.random(in: 0...3, using: &rng)), bytes: bytes)
        case 4:
            let (first, count) = run()
            return .zeroPages(first: first, count: count)
        case 5:
            let (first, count) = run()
            return .unchanged(first: first, count: count)
        case 6:
            let indices = (0..<Int.random(in: 0...100, using: &rng)).map { _ in UInt64.random(in: 0..<pageCount, using: &rng) }
            return Bool.random(using: &rng) ? .staleSet(indices) : .hotSet(indices)
        case 7:
            let count = Int.random(in: 1...200, using: &rng)
            var bits = (0..<(count + 7) / 8).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if count % 8 != 0 { bits[bits.count - 1] &= UInt8(1 << (count % 8)) - 1 }
            return .have(first: UInt64.random(in: 0...(pageCount - UInt64(count)), using: &rng), bits: bits, count: count)
        case 8:
            return .switchover(arg: rng.next(), state: (0..<Int.random(in: 0...3_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        default:
            return sampleMessages.randomElement(using: &rng)!
        }
    }
}
