import Testing
import Wire

@Suite("PageHash and ArenaDigest")
struct HashTests {
    func hash(_ bytes: [UInt8]) -> UInt128 {
        bytes.withUnsafeBytes { PageHash.hash($0) }
    }

    func patternPage(_ size: Int = 4096) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 8)) }
    }

    @Test func isDeterministicAndPinned() {
        let page = patternPage()
        #expect(hash(page) == hash(page))
        // Pinned values: both agents must compute the same hash, so any change to the
        // function is a protocol change and must bump the protocol version.
        #expect(hash(page) == pinnedPattern)
        #expect(hash([UInt8](repeating: 0, count: 4096)) == pinnedZero)
        #expect(hash([]) == pinnedEmpty)
    }

    @Test func everySingleBytePositionChangesTheHash() {
        let page = patternPage()
        let original = hash(page)
        var seen: Set<UInt128> = [original]
        var copy = page
        for i in 0..<page.count {
            copy[i] ^= 0x01
            let flipped = hash(copy)
            copy[i] = page[i]
            #expect(flipped != original, "flipping byte \(i)")
            seen.insert(flipped)
        }
        #expect(seen.count == page.count + 1)
        // Both 64-bit halves must react, not just one lane.
        copy[4095] &+= 0x80
        let changed = hash(copy)
        #expect(UInt64(truncatingIfNeeded: changed) != UInt64(truncatingIfNeeded: original))
        #expect(changed >> 64 != original >> 64)
    }

    @Test func differentLengthsHashDifferently() {
        var seen: Set<UInt128> = []
        for length in Array(0...80) + [4088, 4095, 4096, 4097, 8192] {
            seen.insert(hash([UInt8](repeating: 0, count: length)))
        }
        #expect(seen.count == 86)
        #expect(hash(patternPage(4095)) != hash(patternPage(4096)))
    }

    @Test func alignmentDoesNotMatter() {
        let page = patternPage(4096 + 9)
        for offset in 0..<8 {
            let slice = page[offset..<(offset + 4096)]
            let direct = page.withUnsafeBytes { PageHash.hash(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + 4096)])) }
            #expect(direct == hash(Array(slice)))
        }
    }

    @Test func digestIsOrderIndependent() {
        var rng = SeededGenerator(seed: 11)
        let pages = (0..<64).map { i in (UInt64(i), UInt128(rng.next()) << 64 | UInt128(rng.next())) }
        var forward = ArenaDigest()
        for (index, h) in pages { forward.add(page: index, hash: h) }
        for _ in 0..<10 {
            var shuffled = ArenaDigest()
            for (index, h) in pages.shuffled(using: &rng) { shuffled.add(page: index, hash: h) }
            #expect(shuffled == forward)
        }
        var halves = ArenaDigest()
        var other = ArenaDigest()
        for (index, h) in pages[..<30] { halves.add(page: index, hash: h) }
        for (index, h) in pages[30...] { other.add(page: index, hash: h) }
        halves.merge(other)
        #expect(halves == forward)
        #expect(forward != ArenaDigest())
    }

    @Test func digestOfArenaMatchesPageByPageAndDetectsChanges() {
        let pageSize = 4096
        var arena = (0..<(16 * pageSize)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ ($0 >> 12)) }
        let digest = arena.withUnsafeBytes { ArenaDigest.of(arena: $0, pageSize: pageSize) }
        var manual = ArenaDigest()
        for i in 0..<16 {
            manual.add(page: UInt64(i), hash: hash(Array(arena[(i * pageSize)..<((i + 1) * pageSize)])))
        }
        #expect(digest == manual)

        // One byte of one page.
        arena[5 * pageSize + 100] ^= 0x40
        #expect(arena.withUnsafeBytes { ArenaDigest.of(arena: $0, pageSize: pageSize) } != digest)
        arena[5 * pageSize + 100] ^= 0x40
        #expect(arena.withUnsafeBytes { ArenaDigest.of(arena: $0, pageSize: pageSize) } == digest)

        // Two pages trade places: same multiset of hashes, different indices.
        var swapped = ArenaDigest()
        for i in 0..<16 {
            let source = i == 2 ? 9 : i == 9 ? 2 : i
            swapped.add(page: UInt64(i), hash: hash(Array(arena[(source * pageSize)..<((source + 1) * pageSize)])))
        }
        #expect(swapped != digest)

        // The same hash added at another index.
        var moved = manual
        let h3 = hash(Array(arena[(3 * pageSize)..<(4 * pageSize)]))
        moved.remove(page: 3, hash: h3)
        moved.add(page: 4, hash: h3)
        #expect(moved != digest)
        moved.remove(page: 4, hash: h3)
        moved.add(page: 3, hash: h3)
        #expect(moved == digest)
    }
}

// XXH3-128 with seed 0, as the C library computes it (`XXH3_128bits`, high64 then low64);
// the empty input's value is xxHash's own reference vector.
private let pinnedPattern: UInt128 = 0x08EF_8FC6_D37A_7191_5C72_2D9C_EB6F_9064
private let pinnedZero: UInt128 = 0x3EE8_DC4F_9E7E_E495_93D7_6FE1_48C6_89BA
private let pinnedEmpty: UInt128 = 0x99AA_06D3_0147_98D8_6001_C324_468D_497F
