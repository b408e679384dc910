import Testing
import Wire

/// Limits of a small session used throughout the tests (small pages keep streams short).
let testPageSize = 64
let testLimits = FrameLimits(pageSize: testPageSize, pageCount: 1_000, maxPagesPerFrame: 16)

/// A deterministic generator (SplitMix64), so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func pageBytes(count: Int, seed: UInt8) -> [UInt8] {
    (0..<count * testPageSize).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}

/// At least one message of every kind, with the interesting variants.
let sampleMessages: [Message] = [
    .hello(Hello(channel: .urgent, pageSize: testPageSize, pageCount: 1_000)),
    .hello(Hello(channel: .bulk, pageSize: testPageSize, pageCount: 1_000, sessionID: UInt128.max - 7, resumeCount: 999)),
    .welcome(Welcome(pageSize: testPageSize, pageCount: 1_000, sessionID: 0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210)),
    .request(first: 0, count: 1, hashes: []),
    .request(first: 990, count: 3, hashes: [1, UInt128.max, 0xDEAD_BEEF << 64]),
    .pages(first: 5, count: 2, flags: [], bytes: pageBytes(count: 2, seed: 1)),
    .pages(first: 999, count: 1, flags: [.demand, .refresh], bytes: pageBytes(count: 1, seed: 2)),
    .zeroPages(first: 984, count: 16),
    .unchanged(first: 7, count: 1),
    .staleSet([]),
    .staleSet([0, 999, 42, 42]),
    .hotSet([999, 0, 7]),
    .switchover(arg: 0xFFFF_0000_1234, state: []),
    .switchover(arg: 1, state: Array(0...255)),
    .endOfStream(pagesSent: 1_000, digest: 0xABCD << 100 | 17),
    .done(pagesReceived: 1_000, digest: UInt128.max),
    .error(code: .sizeMismatch, message: "page size 4096 ≠ 65536 ✗"),
    .error(code: .cancelled, message: ""),
    .have(first: 0, bits: [0xFF, 0x01], count: 9),
    .have(first: 992, bits: [0b1010_0101], count: 8),
    .authNonce(Array(0..<32)),
    .authProof(Array(repeating: 0xA5, count: 32)),
]

/// Feeds `chunks` one after the other, draining messages after each.
func decodeAll(_ chunks: [ArraySlice<UInt8>], limits: FrameLimits = testLimits) throws(WireError) -> [Message] {
    var decoder = StreamDecoder(limits: limits)
    var messages: [Message] = []
    for chunk in chunks {
        decoder.feed(chunk)
        while let message = try decoder.nextMessage() { messages.append(message) }
    }
    #expect(decoder.bufferedByteCount == 0)
    return messages
}

/// The first error decoding `bytes` raises, nil if it decodes cleanly.
func firstError(_ bytes: [UInt8], limits: FrameLimits = testLimits) -> WireError? {
    var decoder = StreamDecoder(limits: limits)
    decoder.feed(bytes)
    do {
        while try decoder.nextMessage() != nil {}
        return nil
    } catch {
        return error
    }
}

/// A header built byte by byte, independently of `FrameHeader.encode`.
func rawHeader(
    kind: UInt8, flags: UInt16 = 0, length: UInt32 = 0, count: UInt32 = 0, arg: UInt64 = 0,
    magic: UInt32 = 0x414D_4350, version: UInt8 = WireConstants.protocolVersion
) -> [UInt8] {
    var bytes: [UInt8] = []
    func le<T: FixedWidthInteger>(_ value: T) {
        for i in 0..<(T.bitWidth / 8) { bytes.append(UInt8(truncatingIfNeeded: value >> (i * 8))) }
    }
    le(magic)
    bytes.append(version)
    bytes.append(kind)
    le(flags)
    le(length)
    le(count)
    le(arg)
    return bytes
}

func rawHeader(
    _ kind: FrameKind, flags: UInt16 = 0, length: UInt32 = 0, count: UInt32 = 0, arg: UInt64 = 0
) -> [UInt8] {
    rawHeader(kind: kind.rawValue, flags: flags, length: length, count: count, arg: arg)
}

extension WireError {
    /// The kind named by a `badPayload` error, for tests that do not pin the reason text.
    var badPayloadKind: FrameKind? {
        if case .badPayload(let kind, _) = self { kind } else { nil }
    }
}
