/// One complete frame found at the start of a buffer by `FrameParser.parse`.
/// It borrows the buffer: `payload` is valid only as long as the bytes it came from.
public struct ParsedFrame {
    /// The validated header.
    public let header: FrameHeader
    /// The payload: a slice of the parsed buffer, not a copy.
    public let payload: UnsafeRawBufferPointer
    /// Header plus payload: the bytes to consume from the buffer.
    public let size: Int
    /// The limits the frame was validated against (`Message.init` checks indices with them).
    public let limits: FrameLimits

    init(header: FrameHeader, payload: UnsafeRawBufferPointer, size: Int, limits: FrameLimits) {
        self.header = header
        self.payload = payload
        self.size = size
        self.limits = limits
    }

    /// A frame whose header and payload were read into separate buffers (header via
    /// `FrameParser.parseHeader`, payload straight after). Re-validates the header and
    /// checks that `payload` holds exactly `header.length` bytes.
    public init(header: FrameHeader, payload: UnsafeRawBufferPointer, limits: FrameLimits) throws(WireError) {
        guard header.version == WireConstants.protocolVersion else {
            throw .unsupportedVersion(found: header.version, supported: WireConstants.protocolVersion)
        }
        try FrameParser.validate(header, limits)
        guard payload.count == Int(header.length) else {
            throw .badLength(kind: header.kind, length: payload.count, expected: Int(header.length))
        }
        self.init(header: header, payload: payload, size: header.frameSize, limits: limits)
    }
}

/// Stateless frame validation over raw bytes. Every header field is checked as soon as
/// the 24 header bytes are present, so garbage or a hostile length is rejected without
/// waiting for (or allocating) a payload. Never traps: all arithmetic on peer values is
/// done in `UInt64` with overflow reported.
public enum FrameParser {
    /// Parses the frame at the start of `bytes`. Returns nil when more bytes are needed
    /// (header incomplete, or payload incomplete), throws when the bytes present are invalid.
    public static func parse(_ bytes: UnsafeRawBufferPointer, limits: FrameLimits) throws(WireError) -> ParsedFrame? {
        guard let header = try parseHeader(bytes, limits: limits) else { return nil }
        let size = header.frameSize
        guard bytes.count >= size else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[WireConstants.headerSize..<size])
        return ParsedFrame(header: header, payload: payload, size: size, limits: limits)
    }

    /// Validates the header at the start of `bytes` without needing the payload, so a
    /// receiver can read a page payload straight into its final place. Returns nil
    /// while fewer than 24 bytes are present; magic, version and kind are checked
    /// as soon as their bytes arrive.
    public static func parseHeader(_ bytes: UnsafeRawBufferPointer, limits: FrameLimits) throws(WireError) -> FrameHeader? {
        guard let base = bytes.baseAddress else { return nil }
        let available = bytes.count
        guard available >= 4 else { return nil }
        let magic = base.loadLE(at: 0, as: UInt32.self)
        guard magic == WireConstants.magic else { throw .badMagic(found: magic) }
        guard available >= 5 else { return nil }
        let version = base.load(fromByteOffset: 4, as: UInt8.self)
        guard version == WireConstants.protocolVersion else {
            throw .unsupportedVersion(found: version, supported: WireConstants.protocolVersion)
        }
        guard available >= 6 else { return nil }
        let rawKind = base.load(fromByteOffset: 5, as: UInt8.self)
        guard let kind = FrameKind(rawValue: rawKind) else { throw .unknownKind(rawKind) }
        guard available >= WireConstants.headerSize else { return nil }
        let header = FrameHeader(
            kind: kind,
            flags: base.loadLE(at: 6),
            length: base.loadLE(at: 8),
            count: base.loadLE(at: 12),
            arg: base.loadLE(at: 16),
            version: version)
        try validate(header, limits)
        return header
    }

    /// Checks phase, flags, count, arg and length of a header against `limits`.
    static func validate(_ header: FrameHeader, _ limits: FrameLimits) throws(WireError) {
        let kind = header.kind
        if limits.isHandshake && !kind.allowedBeforeHandshake { throw .unexpectedFrame(kind: kind) }
        let unknownFlags = header.flags & ~kind.knownFlags
        if unknownFlags != 0 { throw .reservedNotZero(kind: kind, field: "flags", value: UInt64(unknownFlags)) }

        let count = UInt64(header.count)
        let length = UInt64(header.length)
        let pageSize = UInt64(clamping: limits.pageSize)
        let maxPages = UInt64(clamping: limits.maxPagesPerFrame)
        let maxControl = UInt64(clamping: limits.maxControlPayload)

        // The most payload this kind may ever carry, and the exact length if it is fixed.
        let maxLength: UInt64
        let expected: UInt64?
        switch kind {
        case .hello:
            try requireZero(kind, count: count, arg: header.arg)
            (maxLength, expected) = (UInt64(Hello.payloadSize), UInt64(Hello.payloadSize))
        case .welcome:
            try requireZero(kind, count: count, arg: header.arg)
            (maxLength, expected) = (UInt64(Welcome.payloadSize), UInt64(Welcome.payloadSize))
        case .error:
            try requireZero(kind, count: count, arg: header.arg)
            maxLength = 2 + UInt64(WireConstants.maxErrorMessage)
            expected = length < 2 ? 2 : nil
        case .request:
            try checkRun(kind, first: header.arg, count: count, maxCount: maxPages, limits.pageCount)
            maxLength = saturatingProduct(maxPages, 16)
            expected = header.flags & RequestFlags.hasHash.rawValue != 0 ? count * 16 : 0
        case .pages:
            try checkRun(kind, first: header.arg, count: count, maxCount: maxPages, limits.pageCount)
            maxLength = saturatingProduct(maxPages, pageSize)
            expected = saturatingProduct(count, pageSize)
        case .zeroPages, .unchanged:
            try checkRun(kind, first: header.arg, count: count, maxCount: maxPages, limits.pageCount)
            (maxLength, expected) = (0, 0)
        case .staleSet, .hotSet:
            try requireZero(kind, count: 0, arg: header.arg)
            (maxLength, expected) = (maxControl, count * 8)
        case .switchover:
            try requireZero(kind, count: count, arg: 0)
            (maxLength, expected) = (UInt64(clamping: limits.maxGuestState), nil)
        case .endOfStream, .done:
            try requireZero(kind, count: count, arg: 0)
            (maxLength, expected) = (16, 16)
        case .have:
            try checkRun(kind, first: header.arg, count: count, maxCount: nil, limits.pageCount)
            (maxLength, expected) = (maxControl, (count + 7) / 8)
        case .authNonce, .authProof:
            try requireZero(kind, count: count, arg: header.arg)
            (maxLength, expected) = (UInt64(WireConstants.authTokenSize), UInt64(WireConstants.authTokenSize))
        }
        if length > maxLength {
            throw .frameTooLong(kind: kind, length: Int(clamping: length), max: Int(clamping: maxLength))
        }
        if let expected, length != expected {
            throw .badLength(kind: kind, length: Int(clamping: length), expected: Int(clamping: expected))
        }
    }

    private static func requireZero(_ kind: FrameKind, count: UInt64, arg: UInt64) throws(WireError) {
        if count != 0 { throw .reservedNotZero(kind: kind, field: "count", value: count) }
        if arg != 0 { throw .reservedNotZero(kind: kind, field: "arg", value: arg) }
    }

    private static func checkRun(
        _ kind: FrameKind, first: UInt64, count: UInt64, maxCount: UInt64?, _ pageCount: UInt64
    ) throws(WireError) {
        if count == 0 { throw .emptyPageRun(kind: kind) }
        if let maxCount, count > maxCount {
            throw .tooManyPages(count: Int(clamping: count), max: Int(clamping: maxCount))
        }
        let (end, overflow) = first.addingReportingOverflow(count)
        if overflow || end > pageCount { throw .pageOutOfRange(first: first, count: count, pageCount: pageCount) }
    }

    private static func saturatingProduct(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? .max : product
    }
}
