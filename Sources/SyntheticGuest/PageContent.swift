import MigrateAgent
/// The contents a guest page must have: a pure function of its index and a
/// version the guest bumps when it writes. A wrong, stale (older version) or
/// zero page fails `verify`, so no bad page is silently accepted.
public enum PageContent {
    /// Word 1 carries this tag beside the version, so an all-zero page never passes.
    static let tag: UInt64 = 0x5047_0000_0000_0000

    @inline(__always) static func seed(_ index: UInt64, _ version: UInt32) -> UInt64 {
        var z = index &* 0x9E37_79B9_7F4A_7C15 ^ (UInt64(version) &* 0xBF58_476D_1CE4_E5B9)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Writes the contents of page `index` at `version` to `page`.
    public static func fill(_ page: UnsafeMutableRawPointer, index: Int, version: UInt32, pageSize: Int) {
        let words = page.assumingMemoryBound(to: UInt64.self)
        let s = seed(UInt64(index), version)
        words[0] = UInt64(index)
        words[1] = tag | UInt64(version)
        for i in 2..<(pageSize / 8) { words[i] = s &+ UInt64(i) &* 0xD6E8_FEB8_6659_FD93 }
    }

    /// Whether `page` holds page `index` at `version`.
    public static func verify(_ page: UnsafeRawPointer, index: Int, version: UInt32, pageSize: Int) -> Bool {
        let words = page.assumingMemoryBound(to: UInt64.self)
        guard words[0] == UInt64(index), words[1] == tag | UInt64(version) else { return false }
        let s = seed(UInt64(index), version)
        var diff: UInt64 = 0
        for i in 2..<(pageSize / 8) { diff |= words[i] ^ (s &+ UInt64(i) &* 0xD6E8_FEB8_6659_FD93) }
        return diff == 0
    }

    /// What a page holds instead, for an error message.
    public static func describe(_ page: UnsafeRawPointer, pageSize: Int) -> String {
        let words = page.assumingMemoryBound(to: UInt64.self)
        if (0..<(pageSize / 8)).allSatisfy({ words[$0] == 0 }) { return "an all-zero page" }
        guard words[1] & 0xFFFF_0000_0000_0000 == tag else { return "unrecognised bytes" }
        return "page \(words[0]) version \(words[1] & 0xFFFF_FFFF)"
    }
}
