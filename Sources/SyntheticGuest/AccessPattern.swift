import MigrateAgent
/// How guest threads walk their pages, as vCPUs would.
public enum AccessPattern: String, Codable, Sendable, CaseIterable {
    /// Each page in order.
    case sequential
    /// Each page once, in a random order.
    case random
    /// Skewed: 90% of accesses go to a hot 10% of the pages (`HotSet`).
    case hotset

    /// The pages (indices into `pages`) one thread visits, `count` accesses long.
    /// With `hotset`, the hot pages are those of `pages` in `hotSet`, shared by every
    /// thread and by source and destination (a thread with none of them uses its first page).
    /// With `random`, each page once in the order of `RandomPermutation` (the same as `walk`).
    /// Public for the benchmark's baselines, which walk pages in the guest's random order.
    /// Generic over the index type: the destination's guest keeps 4-byte indices, half the memory.
    public func order<Page: FixedWidthInteger>(pages: [Page], seed: UInt64, hotSet: HotSet = HotSet()) -> [Page] {
        var rng = SplitMix64(seed: seed)
        switch self {
        case .sequential:
            return pages
        case .random:
            let permutation = RandomPermutation(count: pages.count, seed: seed)
            return (0..<pages.count).map { pages[permutation[$0]] }
        case .hotset:
            guard !pages.isEmpty else { return [] }
            var hot = pages.filter { hotSet.contains(Int($0)) }
            if hot.isEmpty { hot = [pages[0]] }
            // 90% of accesses to the hot pages, 10% to any page of the thread.
            return (0..<pages.count).map { _ in
                rng.next() % 10 == 0 ? pages[Int(rng.next() % UInt64(pages.count))] : hot[Int(rng.next() % UInt64(hot.count))]
            }
        }
    }

    /// The walk of one thread over the pages `first`, `first + stride`, ... (`count`
    /// of them), in the order `order` gives them: computed step by step for
    /// `sequential` and `random`, so a guest thread keeps no table of its pages;
    /// listed for `hotset`, whose accesses repeat.
    public func walk(first: Int, stride: Int, count: Int, seed: UInt64, hotSet: HotSet = HotSet()) -> PageWalk {
        switch self {
        case .sequential: PageWalk(first: first, stride: stride, steps: .inOrder(count))
        case .random: PageWalk(first: first, stride: stride, steps: .permuted(RandomPermutation(count: count, seed: seed)))
        case .hotset:
            PageWalk(first: first, stride: stride, steps: .listed(order(
                pages: Array(Swift.stride(from: UInt32(first), to: UInt32(first + stride * count), by: stride)),
                seed: seed, hotSet: hotSet)))
        }
    }
}

/// The pages one guest thread visits, step by step (`AccessPattern.walk`).
public struct PageWalk: Sendable {
    enum Steps: Sendable {
        case inOrder(Int)
        case permuted(RandomPermutation)
        /// Page indices, not positions.
        case listed([UInt32])
    }

    let first: Int
    let stride: Int
    let steps: Steps

    /// Accesses in the walk.
    public var count: Int {
        switch steps {
        case .inOrder(let count): count
        case .permuted(let permutation): permutation.count
        case .listed(let pages): pages.count
        }
    }

    /// The page of access `step` (0 ..< count).
    @inline(__always) public subscript(step: Int) -> Int {
        switch steps {
        case .inOrder: first + stride * step
        case .permuted(let permutation): first + stride * permutation[step]
        case .listed(let pages): Int(pages[step])
        }
    }
}

/// A seeded permutation of `0 ..< count`, one position at a time: a four-round
/// Feistel network over the smallest even number of bits that covers `count`,
/// walked along its cycle back into range (fewer than four rounds of that on
/// average, as the domain is under four times `count`). Nothing is stored.
public struct RandomPermutation: Sendable {
    public let count: Int
    private let halfBits: UInt64
    private let keys: (UInt64, UInt64, UInt64, UInt64)

    public init(count: Int, seed: UInt64) {
        self.count = max(0, count)
        var bits: UInt64 = 2
        while bits < 62, UInt64(1) << bits < UInt64(self.count) { bits += 2 }
        halfBits = bits / 2
        var rng = SplitMix64(seed: seed)
        keys = (rng.next(), rng.next(), rng.next(), rng.next())
    }

    /// The position `index` moves to (both in `0 ..< count`).
    @inline(__always) public subscript(index: Int) -> Int {
        var x = encrypt(UInt64(index))
        while x >= UInt64(count) { x = encrypt(x) }
        return Int(x)
    }

    @inline(__always) private func encrypt(_ value: UInt64) -> UInt64 {
        let mask = (UInt64(1) << halfBits) - 1
        var left = value >> halfBits, right = value & mask
        (left, right) = (right, left ^ (Self.round(right ^ keys.0) & mask))
        (left, right) = (right, left ^ (Self.round(right ^ keys.1) & mask))
        (left, right) = (right, left ^ (Self.round(right ^ keys.2) & mask))
        (left, right) = (right, left ^ (Self.round(right ^ keys.3) & mask))
        return left << halfBits | right
    }

    @inline(__always) private static func round(_ x: UInt64) -> UInt64 {
        var z = x &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 29)) &* 0xBF58_476D_1CE4_E5B9
        return z ^ (z >> 32)
    }
}

/// A small, seeded generator so that runs are repeatable.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
