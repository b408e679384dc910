/// What a receiver accepts: the session's geometry plus size caps. The parser checks
/// every header against these before it waits for a payload, so a bad length or index
/// from the peer is rejected instead of trusted.
public struct FrameLimits: Equatable, Sendable {
    /// Bytes per page; 0 before the handshake.
    public var pageSize: Int
    /// Pages in the arena; 0 before the handshake.
    public var pageCount: UInt64
    /// Most pages one `request`, `pages`, `zeroPages` or `unchanged` frame may cover.
    public var maxPagesPerFrame: Int
    /// Most payload bytes of a `staleSet`, `hotSet` or `have` frame.
    public var maxControlPayload: Int
    /// Most payload bytes of a `switchover` frame.
    public var maxGuestState: Int

    public init(
        pageSize: Int, pageCount: UInt64, maxPagesPerFrame: Int = 256,
        maxControlPayload: Int = 64 * 1024, maxGuestState: Int = 16 * 1024 * 1024
    ) {
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.maxPagesPerFrame = maxPagesPerFrame
        self.maxControlPayload = maxControlPayload
        self.maxGuestState = maxGuestState
    }

    /// Limits before the handshake: page size and count unknown (0), so only `hello`,
    /// `welcome` and `error` parse; anything else is `WireError.unexpectedFrame`.
    public static let handshake = FrameLimits(pageSize: 0, pageCount: 0)

    /// True while the page size is unknown, i.e. before the handshake completed.
    public var isHandshake: Bool { pageSize <= 0 }

    /// Most pages one frame may cover in a session of small pages: a protocol rule
    /// both agents share, so a sender never builds a frame its receiver refuses.
    public static let sessionPagesPerFrame = 256

    /// Most page bytes one frame may carry: with large pages (2 MiB) a frame holds
    /// fewer pages, at least one, so that receive buffers stay small.
    public static let sessionPageBytesPerFrame = 1 << 20

    /// Pages per frame in a session of `pageSize`-byte pages.
    public static func sessionPagesPerFrame(pageSize: Int) -> Int {
        max(1, min(sessionPagesPerFrame, sessionPageBytesPerFrame / max(1, pageSize)))
    }

    /// Most payload bytes of a `staleSet`, `hotSet` or `have` frame in a session.
    public static let sessionControlPayload = 64 * 1024

    /// The limits of a migration session once the handshake fixed the geometry; the one
    /// definition both agents use. Guest state may take 4 bytes per page (at least 64 KiB).
    /// Any geometry a `hello` or `welcome` may carry is safe here: products saturate.
    public static func session(pageSize: Int, pageCount: UInt64) -> FrameLimits {
        let (stateBytes, overflow) = pageCount.multipliedReportingOverflow(by: 4)
        return FrameLimits(pageSize: pageSize, pageCount: pageCount, maxPagesPerFrame: sessionPagesPerFrame(pageSize: pageSize),
                           maxControlPayload: sessionControlPayload,
                           maxGuestState: max(64 * 1024, overflow ? Int.max : Int(clamping: stateBytes)))
    }

    /// The largest frame, header included, that these limits let through: what a
    /// receive buffer must hold. Saturates at `Int.max` instead of trapping.
    public var largestFrame: Int {
        if isHandshake {  // only handshake, key-proof and error frames parse
            return WireConstants.headerSize + max(Hello.payloadSize, Welcome.payloadSize,
                                                  WireConstants.authTokenSize, WireConstants.maxErrorMessage + 2)
        }
        func product(_ a: Int, _ b: Int) -> Int {
            let (value, overflow) = max(a, 0).multipliedReportingOverflow(by: max(b, 0))
            return overflow ? .max : value
        }
        let payload = max(product(maxPagesPerFrame, pageSize),
                          product(maxPagesPerFrame, 16),  // a request with one PageHash per page
                          maxControlPayload, maxGuestState, Hello.payloadSize, WireConstants.maxErrorMessage + 8)
        let (frame, overflow) = WireConstants.headerSize.addingReportingOverflow(payload)
        return overflow ? .max : frame
    }
}
