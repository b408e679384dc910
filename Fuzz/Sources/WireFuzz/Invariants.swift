import Wire

#if canImport(Glibc)
import Glibc
#endif

// The invariants the harness holds the wire decoder to. Any violation prints what and
// where, then aborts, which libFuzzer reports as a crash and saves the input.
//
// Tests/WireTests/MutationFuzzTests.swift checks the same invariants in CI (without
// libFuzzer); keep the two in step when a rule changes.

/// Writes to file descriptor 2 (the C `stderr` global is not concurrency-safe in Swift 6).
func writeStderr(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

@inline(never)
func violation(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    writeStderr("wire-fuzz: invariant violated (\(file):\(line)): \(message)\n")
    abort()
}

@inline(__always)
func require(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition { violation(message(), file: file, line: line) }
}

/// The limits every input is decoded with: before the handshake, the agents' session
/// limits for two geometries (the seeds use 64-byte pages, 1 000 pages), the unit tests'
/// limits, and small odd ones where caps, not the geometry, decide.
let fuzzLimits: [FrameLimits] = [
    .handshake,
    .session(pageSize: 4096, pageCount: 1 << 20),
    .session(pageSize: 64, pageCount: 1_000),
    FrameLimits(pageSize: 64, pageCount: 1_000, maxPagesPerFrame: 16),
    FrameLimits(pageSize: 1, pageCount: 3, maxPagesPerFrame: 2, maxControlPayload: 5, maxGuestState: 7),
    FrameLimits(pageSize: 8, pageCount: .max, maxPagesPerFrame: 300, maxControlPayload: 0, maxGuestState: 0),
    FrameLimits(pageSize: 4096, pageCount: 1, maxPagesPerFrame: 0, maxControlPayload: 1, maxGuestState: 1),
]

/// What decoding a whole buffer from its start gave: the messages, the bytes they
/// used, and the error that stopped it (nil: the rest is an incomplete frame or nothing).
struct Decoded: Equatable {
    var messages: [Message] = []
    var consumed = 0
    var error: WireError?
    /// The limits in force at the end (they change when `adoptHandshake` is set).
    var limits: FrameLimits
}

/// The session limits a receiver would adopt from a `hello` or `welcome` under
/// handshake limits (the agents use their own arena; a resuming or size-agnostic peer
/// would adopt the geometry it is given, and the geometry check must make that safe).
func adoptedLimits(after message: Message, current: FrameLimits) -> FrameLimits? {
    guard current.isHandshake else { return nil }
    let pageSize: Int
    let pageCount: UInt64
    switch message {
    case .hello(let hello): (pageSize, pageCount) = (hello.pageSize, hello.pageCount)
    case .welcome(let welcome): (pageSize, pageCount) = (welcome.pageSize, welcome.pageCount)
    default: return nil
    }
    let session = FrameLimits.session(pageSize: pageSize, pageCount: pageCount)
    require(session.pageSize == pageSize && session.pageCount == pageCount, "session limits changed the geometry")
    require(!session.isHandshake, "session limits of a valid geometry still count as handshake")
    // Computing it must not trap: it sizes the receive buffer.
    let largest = session.largestFrame
    require(largest >= WireConstants.headerSize + Hello.payloadSize, "largestFrame \(largest) below a hello frame")
    require(session.maxGuestState >= 64 * 1024, "guest state cap \(session.maxGuestState) below 64 KiB")
    return session
}

/// Parses `bytes` frame by frame with `FrameParser.parse` and `Message.init`, checking
/// every frame, until an error or an incomplete frame.
func decodeWhole(_ bytes: UnsafeRawBufferPointer, limits initial: FrameLimits, adoptHandshake: Bool) -> Decoded {
    var result = Decoded(limits: initial)
    while true {
        let limits = result.limits
        let rest = UnsafeRawBufferPointer(rebasing: bytes[result.consumed...])
        let frame: ParsedFrame?
        do {
            frame = try FrameParser.parse(rest, limits: limits)
        } catch {
            checkRejected(rest, limits, error)
            result.error = error
            return result
        }
        guard let frame else {
            checkIncomplete(rest, limits)
            return result
        }
        checkFrame(frame, in: rest, limits)
        let message: Message
        do {
            message = try Message(frame)
        } catch {
            checkMessageRejected(frame, error)
            result.error = error
            return result
        }
        checkMessage(message, frame, in: rest, limits)
        result.messages.append(message)
        result.consumed += frame.size
        if adoptHandshake, let session = adoptedLimits(after: message, current: limits) { result.limits = session }
    }
}

/// Bytes that `parse` found incomplete: fewer than a header, or a valid header whose
/// frame is longer than the bytes present, and never longer than the limits allow.
func checkIncomplete(_ rest: UnsafeRawBufferPointer, _ limits: FrameLimits) {
    guard rest.count >= WireConstants.headerSize else { return }
    let header: FrameHeader?
    do { header = try FrameParser.parseHeader(rest, limits: limits) } catch {
        violation("parse said incomplete, parseHeader threw \(error)")
    }
    guard let header else { violation("24 bytes present, parseHeader returned nil") }
    require(header.frameSize > rest.count, "incomplete frame of \(header.frameSize) bytes with \(rest.count) present")
    checkHeaderAgainstLimits(header, limits)
}

/// A rejected frame: `parseHeader` agrees (when the header is complete, the header is
/// what was wrong, or the parser would not have looked further).
func checkRejected(_ rest: UnsafeRawBufferPointer, _ limits: FrameLimits, _ error: WireError) {
    // parse looks at nothing but the header, so parseHeader must refuse it the same way.
    do {
        _ = try FrameParser.parseHeader(rest, limits: limits)
        violation("parse threw \(error), parseHeader accepted the same bytes")
    } catch let headerError {
        require(headerError == error, "parse threw \(error), parseHeader \(headerError)")
    }
    _ = error.description
    _ = error.code
}

/// What the receive buffer and the page handlers rely on, for any header the parser accepts.
func checkHeaderAgainstLimits(_ header: FrameHeader, _ limits: FrameLimits) {
    require(header.version == WireConstants.protocolVersion, "accepted version \(header.version)")
    let largest = limits.largestFrame
    require(header.frameSize <= largest,
            "\(header.kind) frame of \(header.frameSize) bytes accepted, but largestFrame is \(largest) (\(limits))")
    let count = UInt64(header.count)
    switch header.kind {
    case .request, .pages, .zeroPages, .unchanged:
        require(!limits.isHandshake, "\(header.kind) frame accepted before the handshake")
        require(count >= 1 && count <= UInt64(max(limits.maxPagesPerFrame, 0)),
                "\(header.kind) with \(count) pages, limit \(limits.maxPagesPerFrame)")
        let (end, overflow) = header.arg.addingReportingOverflow(count)
        require(!overflow && end <= limits.pageCount, "\(header.kind) pages \(header.arg)+\(count) outside \(limits.pageCount)")
        if header.kind == .pages {
            require(UInt64(header.length) == count * UInt64(limits.pageSize), "pages length \(header.length) for \(count) pages")
        }
    case .have:
        require(!limits.isHandshake, "have frame accepted before the handshake")
        let (end, overflow) = header.arg.addingReportingOverflow(count)
        require(count >= 1 && !overflow && end <= limits.pageCount, "have pages \(header.arg)+\(count) outside \(limits.pageCount)")
        require(Int(header.length) <= max(limits.maxControlPayload, 0), "have payload \(header.length) over the cap")
    case .staleSet, .hotSet:
        require(!limits.isHandshake, "\(header.kind) accepted before the handshake")
        require(Int(header.length) <= max(limits.maxControlPayload, 0), "\(header.kind) payload \(header.length) over the cap")
    case .switchover:
        require(!limits.isHandshake, "switchover accepted before the handshake")
        require(Int(header.length) <= max(limits.maxGuestState, 0), "switchover payload \(header.length) over the cap")
    case .error:
        require(Int(header.length) <= 2 + WireConstants.maxErrorMessage, "error payload \(header.length) over the cap")
    default:
        break
    }
}

/// A frame `parse` accepted: it lies inside the bytes, its payload is exactly the bytes
/// after its header, its header re-encodes to the bytes it came from, and every prefix
/// of it is "incomplete", never an error (a receiver that reads it in pieces accepts it too).
func checkFrame(_ frame: ParsedFrame, in rest: UnsafeRawBufferPointer, _ limits: FrameLimits) {
    let header = frame.header
    require(frame.size >= WireConstants.headerSize, "frame size \(frame.size) below the header")
    require(frame.size <= rest.count, "frame size \(frame.size) exceeds the \(rest.count) bytes given")
    require(frame.size == header.frameSize, "frame size \(frame.size) != header \(header.frameSize)")
    require(frame.payload.count == Int(header.length), "payload \(frame.payload.count) != length \(header.length)")
    if frame.payload.count > 0 {
        require(frame.payload.baseAddress == rest.baseAddress! + WireConstants.headerSize, "payload does not follow its header")
    }
    require(frame.limits == limits, "frame carries other limits")
    checkHeaderAgainstLimits(header, limits)

    // The header is canonical: encoding it gives back the 24 bytes.
    var headerBytes = [UInt8](repeating: 0, count: WireConstants.headerSize)
    headerBytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
    require(headerBytes.elementsEqual(rest[..<WireConstants.headerSize]), "\(header) does not re-encode to its bytes")
    do {
        require(try FrameParser.parseHeader(rest, limits: limits) == header, "parseHeader disagrees with parse")
    } catch {
        violation("parseHeader refused an accepted frame: \(error)")
    }
    checkSeparatePayload(frame, limits)
    for cut in prefixCuts(frameSize: frame.size) {
        do {
            require(try FrameParser.parse(UnsafeRawBufferPointer(rebasing: rest[..<cut]), limits: limits) == nil,
                    "a \(cut)-byte prefix of a \(frame.size)-byte frame parsed as a frame")
        } catch {
            violation("a \(cut)-byte prefix of an accepted \(header.kind) frame was rejected: \(error)")
        }
    }
}

/// Header and payload read into separate buffers (what a receiver placing pages does)
/// make the same frame.
@inline(never)
func checkSeparatePayload(_ frame: ParsedFrame, _ limits: FrameLimits) {
    let copy = Array(frame.payload)
    let size: Result<Int, WireError> = copy.withUnsafeBytes { payload in
        Result { () throws(WireError) in try ParsedFrame(header: frame.header, payload: payload, limits: limits).size }
    }
    switch size {
    case .success(let size): require(size == frame.size, "separately read frame has size \(size), not \(frame.size)")
    case .failure(let error): violation("separately read frame refused: \(error)")
    }
}

/// Prefix lengths to try: every one inside the header, and a few inside the payload.
func prefixCuts(frameSize: Int) -> [Int] {
    var cuts = Array(0..<min(frameSize, WireConstants.headerSize + 1))
    if frameSize > WireConstants.headerSize + 1 { cuts += [frameSize / 2 + 12, frameSize - 1] }
    return cuts.filter { $0 < frameSize }
}

/// `Message.init` may refuse only what the header cannot show: payload contents.
func checkMessageRejected(_ frame: ParsedFrame, _ error: WireError) {
    switch error {
    case .badPayload, .reservedNotZero, .pageOutOfRange: break
    default: violation("Message.init threw a header-level error \(error) for a header the parser accepted")
    }
    _ = error.description
}

/// A decoded message: its fields agree with the header and the limits, and, the
/// protocol being canonical, it re-encodes to exactly the bytes it came from and decodes
/// again to the same message.
func checkMessage(_ message: Message, _ frame: ParsedFrame, in rest: UnsafeRawBufferPointer, _ limits: FrameLimits) {
    let header = frame.header
    require(message.kind == header.kind, "\(header.kind) frame decoded as \(message.kind)")
    func checkRun(_ first: UInt64, _ count: Int) {
        require(count == Int(header.count) && first == header.arg, "run \(first)+\(count) differs from the header")
        let (end, overflow) = first.addingReportingOverflow(UInt64(count))
        require(count >= 1 && !overflow && end <= limits.pageCount, "run \(first)+\(count) outside \(limits.pageCount) pages")
    }
    switch message {
    case .hello(let hello):
        checkGeometry(hello.pageSize, hello.pageCount)
        require(hello.resumeCount <= hello.pageCount, "resume count \(hello.resumeCount) over \(hello.pageCount) pages")
        require(hello.channel == .urgent || hello.sessionID != 0, "bulk hello without a session")
        require(hello.sessionID != 0 || hello.resumeCount == 0, "new session resuming")
    case .welcome(let welcome):
        checkGeometry(welcome.pageSize, welcome.pageCount)
        require(welcome.sessionID != 0, "welcome with session 0")
    case .request(let first, let count, let hashes):
        checkRun(first, count)
        require(count <= limits.maxPagesPerFrame, "request of \(count) pages")
        require(hashes.isEmpty || hashes.count == count, "\(hashes.count) hashes for \(count) pages")
    case .pages(let first, let count, _, let bytes):
        checkRun(first, count)
        require(bytes.count == count * limits.pageSize, "\(bytes.count) page bytes for \(count) pages")
    case .zeroPages(let first, let count), .unchanged(let first, let count):
        checkRun(first, count)
    case .staleSet(let indices), .hotSet(let indices):
        require(indices.allSatisfy { $0 < limits.pageCount }, "page index outside \(limits.pageCount) pages")
        require(indices.count * 8 <= max(limits.maxControlPayload, 0), "\(indices.count) page indices over the cap")
    case .switchover(_, let state):
        require(state.count <= max(limits.maxGuestState, 0), "guest state of \(state.count) bytes over the cap")
    case .error(_, let text):
        require(text.utf8.count <= WireConstants.maxErrorMessage, "error message of \(text.utf8.count) bytes")
    case .have(let first, let bits, let count):
        checkRun(first, count)
        require(bits.count == (count + 7) / 8, "\(bits.count) bitmap bytes for \(count) pages")
        if count % 8 != 0 { require(bits.last! >> (count % 8) == 0, "bitmap padding bits set") }
    default:
        break  // a kind added later: the canonical round trip below still holds it
    }
    _ = message.description

    let encoded = message.encoded()
    require(encoded.elementsEqual(rest[..<frame.size]), "\(message) does not re-encode to the bytes it came from")
    encoded.withUnsafeBytes { again in
        do {
            guard let reparsed = try FrameParser.parse(again, limits: limits) else { violation("re-encoded \(message) is incomplete") }
            require(reparsed.size == again.count, "re-encoded \(message) parses to \(reparsed.size) of \(again.count) bytes")
            require(try Message(reparsed) == message, "re-encoded \(message) decodes differently")
        } catch {
            violation("re-encoded \(message) is rejected: \(error)")
        }
    }
}

func checkGeometry(_ pageSize: Int, _ pageCount: UInt64) {
    require(pageSize > 0 && pageSize & (pageSize - 1) == 0 && pageSize <= Int(UInt32.max), "page size \(pageSize)")
    let (bytes, overflow) = pageCount.multipliedReportingOverflow(by: UInt64(pageSize))
    require(!overflow && bytes <= UInt64(Int.max), "\(pageCount) pages of \(pageSize) bytes accepted")
}

/// Feeds `bytes` to a `StreamDecoder` in chunks of the given sizes (cycled), draining
/// after each, and checks it gives what decoding the whole buffer gave.
func checkStream(_ bytes: UnsafeRawBufferPointer, chunkSizes: [Int], expected: Decoded, initial: FrameLimits, adoptHandshake: Bool) {
    var decoder = StreamDecoder(limits: initial)
    var got = Decoded(limits: initial)
    var offset = 0
    var nextChunk = 0
    feeding: while offset < bytes.count {
        let size = min(max(chunkSizes[nextChunk % chunkSizes.count], 1), bytes.count - offset)
        nextChunk += 1
        decoder.feed(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + size]))
        offset += size
        do {
            while let message = try decoder.nextMessage() {
                got.messages.append(message)
                if adoptHandshake, let session = adoptedLimits(after: message, current: decoder.limits) {
                    decoder.limits = session
                }
            }
        } catch {
            got.error = error
            break feeding
        }
    }
    got.limits = decoder.limits
    require(got.messages == expected.messages,
            "stream split gave \(got.messages.count) messages, whole buffer \(expected.messages.count)")
    require(got.error == expected.error, "stream split failed with \(String(describing: got.error)), whole buffer with \(String(describing: expected.error))")
    require(got.limits == expected.limits, "stream split ended with other limits")
    if let error = got.error {
        // The decoder stays failed and drops what it is fed.
        require(decoder.failure == error, "failure not kept")
        require(decoder.bufferedByteCount == 0, "a failed decoder keeps \(decoder.bufferedByteCount) bytes")
        decoder.feed([0x50, 0x43, 0x4D, 0x41])
        require(decoder.bufferedByteCount == 0, "a failed decoder buffers new bytes")
        do {
            _ = try decoder.nextMessage()
            violation("a failed decoder decoded again")
        } catch {
            require(error == got.error, "a failed decoder threw \(error), first \(String(describing: got.error))")
        }
    } else {
        require(decoder.bufferedByteCount == bytes.count - expected.consumed,
                "decoder holds \(decoder.bufferedByteCount) bytes, \(bytes.count - expected.consumed) not decoded")
    }
}

/// Chunk sizes taken from the input itself (so libFuzzer's mutations steer the splits
/// too), from a generator seeded with its hash, and one byte at a time for short inputs.
func splits(of bytes: UnsafeRawBufferPointer) -> [[Int]] {
    guard !bytes.isEmpty else { return [[1]] }
    var result: [[Int]] = [[bytes.count]]
    // Chunk sizes read from the input bytes, 1...64.
    result.append(bytes.prefix(64).map { Int($0 & 63) + 1 })
    // A generator seeded with the input's FNV-1a hash: mostly small reads, some large.
    var state: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes { state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
    var sizes: [Int] = []
    var total = 0
    while total < bytes.count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let size = z & 1 == 0 ? Int((z >> 1) % 23) + 1 : Int((z >> 8) % 4_096) + 1
        sizes.append(size)
        total += size
    }
    result.append(sizes)
    if bytes.count <= 300 { result.append([1]) }
    return result
}

/// Everything the harness does with one input.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    let cuts = splits(of: bytes)
    // Each fixed limit gets the whole buffer and one split (which one also depends on the
    // input), so the harness stays fast enough for millions of runs under ASan.
    let pick = bytes.count &+ Int(bytes.last ?? 0)
    for (i, limits) in fuzzLimits.enumerated() {
        let whole = decodeWhole(bytes, limits: limits, adoptHandshake: false)
        checkStream(bytes, chunkSizes: cuts[(pick &+ i) % cuts.count], expected: whole, initial: limits, adoptHandshake: false)
    }
    // The handshake as a receiver runs it: handshake limits until a hello or welcome,
    // then the session limits of the geometry it carried; every split.
    let handshake = decodeWhole(bytes, limits: .handshake, adoptHandshake: true)
    for sizes in cuts {
        checkStream(bytes, chunkSizes: sizes, expected: handshake, initial: .handshake, adoptHandshake: true)
    }
}
