/// The pages a hot-set guest favours: about 10% of the arena, chosen by a
/// seeded hash of the page index alone, so the source's guest and the
/// destination's guest (and a benchmark that checks what moved first) agree on
/// it without exchanging anything.
public struct HotSet: Sendable, Equatable {
    public static let defaultSeed: UInt64 = 0x484F_5453_4554  // "HOTSET"
    public let seed: UInt64

    public init(seed: UInt64 = HotSet.defaultSeed) { self.seed = seed }

    /// Whether `page` is hot.
    @inline(__always) public func contains(_ page: Int) -> Bool {
        var z = (UInt64(page) ^ seed) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) % 10 == 0
    }

    /// The hot pages of an arena of `pageCount` pages, ascending.
    public func pages(count pageCount: Int) -> [Int] { (0..<pageCount).filter(contains) }
}
