extension Message {
    /// The complete frame, header and payload. Allocates: meant for control frames and
    /// tests. Traps on a message that cannot be encoded (a count or length that does not
    /// fit the header, `hashes` neither empty nor `count` long, `have` bits not
    /// `ceil(count / 8)` bytes), which is a bug in the sender.
    public func encoded() -> [UInt8] {
        var flags: UInt16 = 0
        var count: UInt64 = 0
        var arg: UInt64 = 0
        var payload: [UInt8] = []
        switch self {
        case .hello(let hello):
            payload.reserveCapacity(Hello.payloadSize)
            payload.append(hello.channel.rawValue)
            payload.appendZeros(3)
            payload.appendLE(UInt32(hello.pageSize))
            payload.appendLE(hello.pageCount)
            payload.appendLE(hello.sessionID)
            payload.appendLE(hello.resumeCount)
        case .welcome(let welcome):
            payload.reserveCapacity(Welcome.payloadSize)
            payload.appendLE(UInt32(welcome.pageSize))
            payload.appendZeros(4)
            payload.appendLE(welcome.pageCount)
            payload.appendLE(welcome.sessionID)
        case .request(let first, let n, let hashes):
            precondition(hashes.isEmpty || hashes.count == n, "request: \(hashes.count) hashes for \(n) pages")
            (arg, count) = (first, UInt64(n))
            if !hashes.isEmpty {
                flags = RequestFlags.hasHash.rawValue
                payload.reserveCapacity(hashes.count * 16)
                for hash in hashes { payload.appendLE(hash) }
            }
        case .pages(let first, let n, let pageFlags, let bytes):
            (arg, count, flags, payload) = (first, UInt64(n), pageFlags.rawValue, bytes)
        case .zeroPages(let first, let n), .unchanged(let first, let n):
            (arg, count) = (first, UInt64(n))
        case .staleSet(let indices), .hotSet(let indices):
            count = UInt64(indices.count)
            payload.reserveCapacity(indices.count * 8)
            for index in indices { payload.appendLE(index) }
        case .switchover(let value, let state):
            (arg, payload) = (value, state)
        case .endOfStream(let n, let digest), .done(let n, let digest):
            arg = n
            payload.appendLE(digest)
        case .error(let code, let message):
            payload.appendLE(code.rawValue)
            payload.append(contentsOf: Self.truncatedUTF8(message, max: WireConstants.maxErrorMessage))
        case .have(let first, let bits, let n):
            precondition(bits.count == (n + 7) / 8, "have: \(bits.count) bitmap bytes for \(n) bits")
            (arg, count, payload) = (first, UInt64(n), bits)
        case .authNonce(let token, let options):
            precondition(token.count == WireConstants.authTokenSize, "auth token of \(token.count) bytes")
            (flags, payload) = (options.rawValue, token)
        case .authProof(let token):
            precondition(token.count == WireConstants.authTokenSize, "auth token of \(token.count) bytes")
            payload = token
        }
        let header = FrameHeader(
            kind: kind, flags: flags, length: UInt32(payload.count), count: UInt32(count), arg: arg)
        var frame: [UInt8] = []
        frame.reserveCapacity(WireConstants.headerSize + payload.count)
        header.append(to: &frame)
        frame.append(contentsOf: payload)
        return frame
    }

    /// The UTF-8 bytes of `string`, cut to at most `max` bytes without splitting a character's encoding.
    static func truncatedUTF8(_ string: String, max: Int) -> [UInt8] {
        var bytes = Array(string.utf8)
        guard bytes.count > max else { return bytes }
        var cut = max
        while cut > 0 && bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
        bytes.removeSubrange(cut...)
        return bytes
    }
}
