/// The kind of a frame (header byte 5). The raw values are part of the protocol.
public enum FrameKind: UInt8, Sendable, CaseIterable {
    /// Destination → source, first frame on each of its two connections.
    case hello = 1
    /// Source → destination, the answer to `hello`.
    case welcome = 2
    /// Destination → source: send pages `arg ..< arg + count` now.
    case request = 3
    /// Source → destination: `count` raw pages starting at `arg`.
    case pages = 4
    /// Source → destination: `count` all-zero pages starting at `arg`, no payload.
    case zeroPages = 5
    /// Source → destination: the stale copies of `count` pages at `arg` are still current.
    case unchanged = 6
    /// Source → destination: the pages listed in the payload are stale.
    case staleSet = 7
    /// Source → destination: opaque guest state handed over at switch-over.
    case switchover = 8
    /// Source → destination on the bulk connection: the background stream is complete.
    case endOfStream = 9
    /// Destination → source: every page is present.
    case done = 10
    /// Either way: the sender is closing the connection for the stated reason.
    case error = 11
    /// Destination → source when resuming: a bitmap of the pages it already holds.
    case have = 12
    /// Either way, first on every connection (destination, then source): a fresh
    /// random nonce for the key proof, and in the flags (`AuthFlags`) whether the
    /// sender seals the connection after the proof. Nothing about the guest.
    case authNonce = 13
    /// Either way after the nonces (destination first): an HMAC over both nonces
    /// proving knowledge of the pre-shared key. The source sends its proof only
    /// after the destination's verified.
    case authProof = 14
    /// Source → destination before `switchover`: pages the guest used most while it
    /// ran on the source, hottest first; the background stream sends them first.
    case hotSet = 15
}

extension FrameKind {
    /// Whether the frame may arrive before the handshake fixed page size and count.
    var allowedBeforeHandshake: Bool {
        switch self {
        case .hello, .welcome, .error, .authNonce, .authProof: true
        default: false
        }
    }

    /// The flag bits this kind defines; any other bit set is a protocol violation.
    var knownFlags: UInt16 {
        switch self {
        case .request: RequestFlags.hasHash.rawValue
        case .pages: PageFlags.demand.rawValue | PageFlags.refresh.rawValue
        case .authNonce: AuthFlags.encrypt.rawValue
        default: 0
        }
    }
}
