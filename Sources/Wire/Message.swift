/// The owned, typed form of every frame. Decoding (`init(_:)`) validates payload
/// contents; `encoded()` produces a complete frame. Page-carrying frames on the hot
/// path should use `FrameHeader.encode` and `FrameParser` directly to avoid copies.
public enum Message: Equatable, Sendable {
    case hello(Hello)
    case welcome(Welcome)
    /// Pages `first ..< first + count`; `hashes` is empty or holds one `PageHash` per
    /// page (of the stale copy the destination holds).
    case request(first: UInt64, count: Int, hashes: [UInt128])
    /// `count` pages starting at `first`; `bytes.count` is `count × pageSize`.
    case pages(first: UInt64, count: Int, flags: PageFlags, bytes: [UInt8])
    case zeroPages(first: UInt64, count: Int)
    case unchanged(first: UInt64, count: Int)
    /// Page indices the destination must treat as stale.
    case staleSet([UInt64])
    /// Hottest first; at most `FrameLimits.sessionControlPayload / 8` per frame, like `staleSet`.
    case hotSet([UInt64])
    case switchover(arg: UInt64, state: [UInt8])
    case endOfStream(pagesSent: UInt64, digest: UInt128)
    case done(pagesReceived: UInt64, digest: UInt128)
    /// `message` is truncated to 1024 UTF-8 bytes (at a character boundary) when encoded.
    case error(code: WireErrorCode, message: String)
    /// Bit `i` of the run (`bits[i / 8] >> (i % 8) & 1`) says whether page `first + i`
    /// is held; bits past `count` in the last byte are zero.
    case have(first: UInt64, bits: [UInt8], count: Int)
    /// A fresh nonce of `WireConstants.authTokenSize` bytes, and what the sender
    /// will do once the key is proven (`AuthFlags`, in the header's flags).
    case authNonce([UInt8], options: AuthFlags = [])
    /// A key proof of `WireConstants.authTokenSize` bytes.
    case authProof([UInt8])

    /// The frame kind this message encodes to.
    public var kind: FrameKind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .request: .request
        case .pages: .pages
        case .zeroPages: .zeroPages
        case .unchanged: .unchanged
        case .staleSet: .staleSet
        case .hotSet: .hotSet
        case .switchover: .switchover
        case .endOfStream: .endOfStream
        case .done: .done
        case .error: .error
        case .have: .have
        case .authNonce: .authNonce
        case .authProof: .authProof
        }
    }
}

extension Message: CustomStringConvertible {
    /// A one-line summary for logs (payload sizes, not payload bytes).
    public var description: String {
        switch self {
        case .hello(let h):
            "hello(\(h.channel), pageSize: \(h.pageSize), pageCount: \(h.pageCount), session: \(h.sessionID), resume: \(h.resumeCount))"
        case .welcome(let w):
            "welcome(pageSize: \(w.pageSize), pageCount: \(w.pageCount), session: \(w.sessionID))"
        case .request(let first, let count, let hashes):
            "request(first: \(first), count: \(count)\(hashes.isEmpty ? "" : ", with hashes"))"
        case .pages(let first, let count, let flags, let bytes):
            "pages(first: \(first), count: \(count), flags: 0x\(String(flags.rawValue, radix: 16)), \(bytes.count) bytes)"
        case .zeroPages(let first, let count):
            "zeroPages(first: \(first), count: \(count))"
        case .unchanged(let first, let count):
            "unchanged(first: \(first), count: \(count))"
        case .staleSet(let indices):
            "staleSet(\(indices.count) pages)"
        case .hotSet(let indices):
            "hotSet(\(indices.count) pages)"
        case .switchover(let arg, let state):
            "switchover(arg: \(arg), \(state.count) bytes)"
        case .endOfStream(let sent, let digest):
            "endOfStream(pagesSent: \(sent), digest: \(String(digest, radix: 16)))"
        case .done(let received, let digest):
            "done(pagesReceived: \(received), digest: \(String(digest, radix: 16)))"
        case .error(let code, let message):
            "error(\(code), \"\(message)\")"
        case .have(let first, _, let count):
            "have(first: \(first), count: \(count))"
        case .authNonce(_, let options):
            options.contains(.encrypt) ? "authNonce(encrypt)" : "authNonce"
        case .authProof:
            "authProof"
        }
    }
}
