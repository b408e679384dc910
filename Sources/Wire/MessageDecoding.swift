extension Message {
    /// Decodes a frame the parser validated, checking what the header cannot: handshake
    /// fields, UTF-8, stale indices against the page count, bitmap padding.
    public init(_ frame: ParsedFrame) throws(WireError) {
        let header = frame.header
        let payload = frame.payload
        let kind = header.kind
        let count = Int(header.count)
        // The parser guaranteed the exact payload length for every fixed-size field read below.
        guard payload.count == Int(header.length) else {
            throw .badLength(kind: kind, length: payload.count, expected: Int(header.length))
        }
        // A parsed payload is a slice of a non-empty buffer, so it has an address; the
        // fallback only stands in for an empty payload, which no branch below reads.
        let base = payload.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        switch kind {
        case .hello:
            self = .hello(try Self.decodeHello(base))
        case .welcome:
            self = .welcome(try Self.decodeWelcome(base))
        case .request:
            var hashes: [UInt128] = []
            if header.flags & RequestFlags.hasHash.rawValue != 0 {
                hashes.reserveCapacity(count)
                for i in 0..<count { hashes.append(base.loadLE(at: i * 16)) }
            }
            self = .request(first: header.arg, count: count, hashes: hashes)
        case .pages:
            self = .pages(first: header.arg, count: count, flags: PageFlags(rawValue: header.flags), bytes: Array(payload))
        case .zeroPages:
            self = .zeroPages(first: header.arg, count: count)
        case .unchanged:
            self = .unchanged(first: header.arg, count: count)
        case .staleSet:
            self = .staleSet(try Self.decodeIndices(base, count: count, pageCount: frame.limits.pageCount))
        case .hotSet:
            self = .hotSet(try Self.decodeIndices(base, count: count, pageCount: frame.limits.pageCount))
        case .switchover:
            self = .switchover(arg: header.arg, state: Array(payload))
        case .endOfStream:
            self = .endOfStream(pagesSent: header.arg, digest: base.loadLE(at: 0))
        case .done:
            self = .done(pagesReceived: header.arg, digest: base.loadLE(at: 0))
        case .error:
            let rawCode: UInt16 = base.loadLE(at: 0)
            guard let code = WireErrorCode(rawValue: rawCode) else {
                throw .badPayload(kind: kind, reason: "unknown error code \(rawCode)")
            }
            guard let message = String(validating: payload[2...], as: UTF8.self) else {
                throw .badPayload(kind: kind, reason: "message is not valid UTF-8")
            }
            self = .error(code: code, message: message)
        case .have:
            let bits = Array(payload)
            let spare = count % 8
            if spare != 0, let last = bits.last, last >> spare != 0 {
                throw .reservedNotZero(kind: kind, field: "bitmap padding bits", value: UInt64(last >> spare))
            }
            self = .have(first: header.arg, bits: bits, count: count)
        case .authNonce:
            self = .authNonce(Array(payload), options: AuthFlags(rawValue: header.flags))
        case .authProof:
            self = .authProof(Array(payload))
        }
    }

    private static func decodeHello(_ base: UnsafeRawPointer) throws(WireError) -> Hello {
        let rawChannel = base.load(fromByteOffset: 0, as: UInt8.self)
        guard let channel = Channel(rawValue: rawChannel) else {
            throw .badPayload(kind: .hello, reason: "channel \(rawChannel) is neither urgent (0) nor bulk (1)")
        }
        let reserved = UInt32(base.loadLE(at: 0, as: UInt32.self) >> 8)
        if reserved != 0 { throw .reservedNotZero(kind: .hello, field: "bytes 1-3", value: UInt64(reserved)) }
        let pageSize: UInt32 = base.loadLE(at: 4)
        let pageCount: UInt64 = base.loadLE(at: 8)
        try validateGeometry(kind: .hello, pageSize: pageSize, pageCount: pageCount)
        let sessionID: UInt128 = base.loadLE(at: 16)
        let resumeCount: UInt64 = base.loadLE(at: 32)
        if channel == .bulk && sessionID == 0 {
            throw .badPayload(kind: .hello, reason: "a bulk hello must carry the session id from the welcome")
        }
        if sessionID == 0 && resumeCount != 0 {
            throw .badPayload(kind: .hello, reason: "a new session cannot resume \(resumeCount) pages")
        }
        if resumeCount > pageCount {
            throw .badPayload(kind: .hello, reason: "resume count \(resumeCount) exceeds page count \(pageCount)")
        }
        return Hello(
            channel: channel, pageSize: Int(pageSize), pageCount: pageCount,
            sessionID: sessionID, resumeCount: resumeCount)
    }

    private static func decodeWelcome(_ base: UnsafeRawPointer) throws(WireError) -> Welcome {
        let pageSize: UInt32 = base.loadLE(at: 0)
        let reserved: UInt32 = base.loadLE(at: 4)
        if reserved != 0 { throw .reservedNotZero(kind: .welcome, field: "bytes 4-7", value: UInt64(reserved)) }
        let pageCount: UInt64 = base.loadLE(at: 8)
        try validateGeometry(kind: .welcome, pageSize: pageSize, pageCount: pageCount)
        let sessionID: UInt128 = base.loadLE(at: 16)
        if sessionID == 0 { throw .badPayload(kind: .welcome, reason: "session id 0 is reserved for \"new session\"") }
        return Welcome(pageSize: Int(pageSize), pageCount: pageCount, sessionID: sessionID)
    }

    /// A list of page indices (`staleSet`, `hotSet`), each checked against the page count.
    private static func decodeIndices(_ base: UnsafeRawPointer, count: Int, pageCount: UInt64) throws(WireError) -> [UInt64] {
        var indices: [UInt64] = []
        indices.reserveCapacity(count)
        for i in 0..<count {
            let index: UInt64 = base.loadLE(at: i * 8)
            guard index < pageCount else { throw .pageOutOfRange(first: index, count: 1, pageCount: pageCount) }
            indices.append(index)
        }
        return indices
    }
}
