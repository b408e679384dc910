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
    /// Public for the benchmark's baselines, which walk pages in the guest's random order.
    /// Generic over the index type: the destination's guest keeps 4-byte indices, half the memory.
    /// Consumes `pages`, so a random walk shuffles them in place instead of in a copy.
    public func order<Page: FixedWidthInteger>(pages: consuming [Page], seed: UInt64, hotSet: HotSet = HotSet()) -> [Page] {
        var rng = SplitMix64(seed: seed)
        switch self {
        case .sequential:
            return pages
        case .random:
            pages.shuffle(using: &rng)
            return pages
        case .hotset:
            let all = pages  // a closure cannot capture a consuming parameter
            guard !all.isEmpty else { return [] }
            var hot = all.filter { hotSet.contains(Int($0)) }
            if hot.isEmpty { hot = [all[0]] }
            // 90% of accesses to the hot pages, 10% to any page of the thread.
            return (0..<all.count).map { _ in
                rng.next() % 10 == 0 ? all[Int(rng.next() % UInt64(all.count))] : hot[Int(rng.next() % UInt64(hot.count))]
            }
        }
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
