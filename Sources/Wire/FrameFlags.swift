/// Flag bits of a `pages` frame (header bytes 6–7).
public struct PageFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The frame answers a `request` (as opposed to the background stream).
    public static let demand = PageFlags(rawValue: 1 << 0)
    /// The frame carries fresh bytes for a page the destination holds as stale.
    public static let refresh = PageFlags(rawValue: 1 << 1)
}

/// Flag bits of a `request` frame (header bytes 6–7).
public struct RequestFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The payload holds one 16-byte `PageHash` per requested page: the hash of the
    /// stale copy the destination holds, so the source can answer `unchanged`.
    public static let hasHash = RequestFlags(rawValue: 1 << 0)
}

/// Flag bits of an `authNonce` frame (header bytes 6–7): what the sender will
/// do once the key is proven. Both agents must send the same bits; a
/// mismatch is refused with `authenticationFailed`, and the bits are bound
/// into the key proofs, so they cannot be changed in transit unnoticed.
public struct AuthFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Every byte after each side's `authProof` is a sealed record (`SealedRecord`),
    /// in both directions (`--encrypt`).
    public static let encrypt = AuthFlags(rawValue: 1 << 0)
}
