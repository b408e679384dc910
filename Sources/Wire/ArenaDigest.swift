/// An order-independent digest of a whole arena: the wrapping sum over pages of a
/// strong mix of (page index, `PageHash`). Pages may be added in any order (background
/// stream and demand answers interleave), and the two agents compare digests at the
/// end (`endOfStream`, `done`). Changing one page's bytes, or moving bytes to another
/// index, changes the digest (barring a 2⁻¹²⁸ accident).
public struct ArenaDigest: Equatable, Sendable {
    /// The combined value, as carried by `endOfStream` and `done`.
    public private(set) var value: UInt128

    /// The digest of no pages.
    public init() { value = 0 }

    /// A digest received from the peer, for comparison.
    public init(value: UInt128) { self.value = value }

    /// Adds page `index` whose contents hash to `hash`.
    public mutating func add(page index: UInt64, hash: UInt128) {
        value &+= Self.mix(index: index, hash: hash)
    }

    /// Takes back an `add` (e.g. when a page is replaced by fresher bytes).
    public mutating func remove(page index: UInt64, hash: UInt128) {
        value &-= Self.mix(index: index, hash: hash)
    }

    /// Combines a digest of a disjoint set of pages (e.g. computed by another thread).
    public mutating func merge(_ other: ArenaDigest) {
        value &+= other.value
    }

    /// The digest of every page of `arena`, indexed from 0. A final partial page (when
    /// the size is not a multiple of `pageSize`) is hashed at its shorter length.
    public static func of(arena: UnsafeRawBufferPointer, pageSize: Int) -> ArenaDigest {
        precondition(pageSize > 0, "ArenaDigest.of: page size must be positive, got \(pageSize)")
        var digest = ArenaDigest()
        var offset = 0
        var index: UInt64 = 0
        while offset < arena.count {
            let end = offset + min(pageSize, arena.count - offset)
            digest.add(page: index, hash: PageHash.hash(UnsafeRawBufferPointer(rebasing: arena[offset..<end])))
            offset = end
            index += 1
        }
        return digest
    }

    /// For a fixed index, a bijection of the 128-bit hash (three Feistel rounds over its
    /// halves, keyed by the index), so distinct hashes at one index never mix equal.
    static func mix(index: UInt64, hash: UInt128) -> UInt128 {
        var x = UInt64(truncatingIfNeeded: hash) ^ Mix64.splitmix(index ^ 0x6A09_E667_F3BC_C908)
        var y = UInt64(truncatingIfNeeded: hash >> 64) ^ Mix64.murmur(index ^ 0xBB67_AE85_84CA_A73B)
        y ^= Mix64.murmur(x ^ 0x3C6E_F372_FE94_F82B)
        x ^= Mix64.splitmix(y ^ 0xA54F_F53A_5F1D_36F1)
        y ^= Mix64.murmur(x ^ 0x510E_527F_ADE6_82D1)
        return UInt128(y) << 64 | UInt128(x)
    }
}
