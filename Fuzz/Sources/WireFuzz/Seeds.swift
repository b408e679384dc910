import Wire

/// The seed geometry: 64-byte pages, 1 000 pages (one of `fuzzLimits`), so page frames
/// stay small and libFuzzer's mutations reach their headers and payloads alike.
let seedPageSize = 64
let seedPageCount: UInt64 = 1_000

func seedPages(_ count: Int, _ salt: UInt8) -> [UInt8] {
    (0..<count * seedPageSize).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(salt)) }
}

/// Valid messages of every kind the protocol defines today, with their interesting variants.
let seedMessages: [Message] = [
    .hello(Hello(channel: .urgent, pageSize: seedPageSize, pageCount: seedPageCount)),
    .hello(Hello(channel: .bulk, pageSize: seedPageSize, pageCount: seedPageCount, sessionID: 0x1234_5678_9ABC_DEF0, resumeCount: 3)),
    .hello(Hello(channel: .urgent, pageSize: 4096, pageCount: 1 << 20)),
    .welcome(Welcome(pageSize: seedPageSize, pageCount: seedPageCount, sessionID: 0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210)),
    .welcome(Welcome(pageSize: 4096, pageCount: 1 << 20, sessionID: 1)),
    .request(first: 0, count: 1, hashes: []),
    .request(first: 997, count: 3, hashes: [1, UInt128.max, 0xDEAD_BEEF << 64]),
    .pages(first: 5, count: 2, flags: [], bytes: seedPages(2, 1)),
    .pages(first: 999, count: 1, flags: [.demand, .refresh], bytes: seedPages(1, 2)),
    .zeroPages(first: 984, count: 16),
    .unchanged(first: 7, count: 1),
    .staleSet([]),
    .staleSet([0, 999, 42, 42]),
    .hotSet([999, 0, 7]),
    .switchover(arg: 0xFFFF_0000_1234, state: []),
    .switchover(arg: 1, state: Array(0...63)),
    .endOfStream(pagesSent: 1_000, digest: 0xABCD << 100 | 17),
    .done(pagesReceived: 1_000, digest: UInt128.max),
    .error(code: .sizeMismatch, message: "page size 4096 ≠ 65536"),
    .error(code: .cancelled, message: ""),
    .have(first: 0, bits: [0xFF, 0x01], count: 9),
    .have(first: 992, bits: [0b1010_0101], count: 8),
    .authNonce(Array(0..<UInt8(WireConstants.authTokenSize))),
    .authProof(Array(repeating: 0xA5, count: WireConstants.authTokenSize)),
]

/// A bare header of `kind` (raw value), count 1, no payload: valid or not, it gives
/// libFuzzer a start for every kind `FrameKind` has, including kinds added after this file.
func bareHeader(_ kind: UInt8, count: UInt32 = 1, arg: UInt64 = 0) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: WireConstants.headerSize)
    bytes.withUnsafeMutableBytes {
        FrameHeader.encode(kind: .hello, length: 0, count: count, arg: arg, into: $0.baseAddress!)
    }
    bytes[5] = kind
    return bytes
}

/// File name → bytes.
func seedCorpus() -> [(String, [UInt8])] {
    var seeds: [(String, [UInt8])] = []
    for (i, message) in seedMessages.enumerated() {
        seeds.append(("frame-\(i)-\(message.kind)", message.encoded()))
    }
    for kind in FrameKind.allCases {
        seeds.append(("header-\(kind)", bareHeader(kind.rawValue)))
        seeds.append(("header-\(kind)-count0", bareHeader(kind.rawValue, count: 0)))
    }
    // The key proof before the handshake, as each connection starts.
    let nonce = Message.authNonce(Array(repeating: 7, count: WireConstants.authTokenSize)).encoded()
    let proof = Message.authProof(Array(repeating: 9, count: WireConstants.authTokenSize)).encoded()
    seeds.append(("auth-then-hello", nonce + nonce + proof + proof + seedMessages[0].encoded()))
    // Handshakes followed by a session's traffic: the harness adopts the geometry of
    // the first hello or welcome, so these reach every kind under session limits.
    let session = seedMessages.filter { ![.hello, .welcome].contains($0.kind) }.flatMap { $0.encoded() }
    seeds.append(("session-after-hello", seedMessages[0].encoded() + session))
    seeds.append(("session-after-welcome", seedMessages[3].encoded() + session))
    seeds.append(("hello-welcome-done", seedMessages[0].encoded() + seedMessages[3].encoded() + seedMessages[16].encoded()))
    // A page frame of the agents' own 4 KiB geometry.
    seeds.append(("pages-4k", Message.pages(first: 1 << 19, count: 1, flags: [.demand], bytes: Array(repeating: 0xA5, count: 4096)).encoded()))
    // An incomplete frame: the decoder must wait, not fail.
    seeds.append(("truncated-hello", Array(seedMessages[0].encoded().prefix(30))))
    return seeds
}
