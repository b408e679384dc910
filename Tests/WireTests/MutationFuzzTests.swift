import Testing
import Wire

/// A short, seeded mutation fuzz run for CI: mutants of valid frames and streams (bit
/// flips, truncations, splices, header and handshake field rewrites) decoded under
/// handshake, session and odd limits, holding the decoder to the invariants of the
/// libFuzzer harness in Fuzz/ (Fuzz/Sources/WireFuzz/Invariants.swift; keep the two in
/// step). The long runs are libFuzzer's; this one keeps the invariants from regressing.
@Suite("Seeded mutation fuzzing of the decoder and the handshake")
struct MutationFuzzTests {
    static let inputs = 30_000
    static let seed: UInt64 = 0x5EED_F022

    /// Handshake, the agents' session limits, the other tests' limits, and odd ones.
    static let limits: [FrameLimits] = [
        .handshake,
        .session(pageSize: testPageSize, pageCount: 1_000),
        .session(pageSize: 4096, pageCount: 1 << 20),
        testLimits,
        FrameLimits(pageSize: 1, pageCount: 3, maxPagesPerFrame: 2, maxControlPayload: 5, maxGuestState: 7),
        FrameLimits(pageSize: 8, pageCount: .max, maxPagesPerFrame: 300, maxControlPayload: 0, maxGuestState: 0),
    ]

    @Test func mutantsKeepTheDecoderInvariants() {
        var rng = SeededGenerator(seed: Self.seed)
        let frames = sampleMessages.map { $0.encoded() } + FrameKind.allCases.map { rawHeader($0, count: 1) }
        let handshakes = sampleMessages.filter { [.hello, .welcome].contains($0.kind) }.map { $0.encoded() }
        var checker = Checker()
        var accepted = 0
        for n in 0..<Self.inputs {
            // A base: one frame, a short stream, or a handshake followed by session frames.
            var base: [UInt8]
            var starts: [Int] = [0]
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                base = frames.randomElement(using: &rng)!
            case 1:
                base = []
                for _ in 0..<Int.random(in: 2...4, using: &rng) {
                    starts.append(base.count)
                    base += frames.randomElement(using: &rng)!
                }
            default:
                base = handshakes.randomElement(using: &rng)!
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    starts.append(base.count)
                    base += frames.randomElement(using: &rng)!
                }
            }
            let input = mutate(base, frameStarts: starts, other: frames.randomElement(using: &rng)!, &rng)
            let limits = Self.limits[n % Self.limits.count]
            if checker.check(input, limits: limits, split: n, adoptHandshake: false) { accepted += 1 }
            if n % 4 == 0 { _ = checker.check(input, limits: .handshake, split: n + 1, adoptHandshake: true) }
            if checker.failures >= 10 { break }
        }
        #expect(checker.failures == 0)
        // The mutants must reach past the header checks often, or they test nothing.
        #expect(checker.messages > Self.inputs / 4, "only \(checker.messages) messages decoded")
        #expect(accepted > Self.inputs / 20, "only \(accepted) mutants decoded without error")
    }

    // MARK: mutations

    /// Values that sit on the decoder's boundaries.
    static let interesting: [UInt64] = [
        0, 1, 2, 7, 8, 15, 16, 17, 40, 64, 255, 256, 257, 999, 1_000, 1_001, 1_024, 1_026, 4096,
        65_536, 1 << 20, 1 << 31, UInt64(UInt32.max), 1 << 32, 1 << 61, (1 << 62) + 1, UInt64(Int.max), .max - 1, .max,
    ]

    func mutate(_ base: [UInt8], frameStarts: [Int], other: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
        var bytes = base
        for _ in 0..<Int.random(in: 1...2, using: &rng) {
            let start = frameStarts.randomElement(using: &rng)!
            switch Int.random(in: 0..<10, using: &rng) {
            case 0:  // flip 1-4 bits
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                }
            case 1:  // truncate
                bytes.removeLast(Int.random(in: 0...bytes.count, using: &rng))
            case 2:  // splice: a prefix of this one, a suffix of another
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
                    + other.suffix(Int.random(in: 0...other.count, using: &rng))
            case 3:  // rewrite the kind: every FrameKind case, or any byte
                let kind = Bool.random(using: &rng)
                    ? FrameKind.allCases.randomElement(using: &rng)!.rawValue : UInt8.random(in: 0...255, using: &rng)
                set(&bytes, start + 5, UInt64(kind), width: 1)
            case 4:  // rewrite flags, length, count or arg
                let (offset, width) = [(6, 2), (8, 4), (12, 4), (16, 8)].randomElement(using: &rng)!
                set(&bytes, start + offset, value(&rng), width: width)
            case 5:  // rewrite a handshake field: page size, page count, session id, resume count
                let (offset, width) = [(24, 1), (28, 4), (32, 8), (40, 8), (48, 8), (56, 8)].randomElement(using: &rng)!
                set(&bytes, start + offset, value(&rng), width: width)
            case 6:  // grow or shrink the length and the payload together
                let delta = Int.random(in: -16...16, using: &rng)
                if delta > 0 { bytes.insert(contentsOf: repeatElement(0, count: delta), at: min(bytes.count, start + 24)) }
                if delta < 0 { bytes.removeLast(min(-delta, bytes.count)) }
                if let length = read(bytes, start + 8, width: 4) {
                    set(&bytes, start + 8, UInt64(truncatingIfNeeded: Int(length) + delta) & 0xFFFF_FFFF, width: 4)
                }
            case 7:  // rewrite count and length together: count × (0, 1/8, 8, 16 or a page)
                let count = Bool.random(using: &rng) ? value(&rng) & 0xFFFF_FFFF : UInt64.random(in: 1...400, using: &rng)
                let length = [0, (count + 7) / 8, count &* 8, count &* 16, count &* UInt64(testPageSize)].randomElement(using: &rng)!
                set(&bytes, start + 12, count, width: 4)
                set(&bytes, start + 8, length & 0xFFFF_FFFF, width: 4)
            case 8:  // rewrite a handshake geometry: page size and page count together
                let shift = [0, 1, 6, 12, 31, 32, Int.random(in: 0...40, using: &rng)].randomElement(using: &rng)!
                set(&bytes, start + 28, 1 << UInt64(shift), width: 4)
                set(&bytes, start + 32, value(&rng), width: 8)
            default:  // overwrite any byte
                if !bytes.isEmpty { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            }
        }
        return bytes
    }

    func value(_ rng: inout SeededGenerator) -> UInt64 {
        let pick = Self.interesting.randomElement(using: &rng)!
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: return rng.next() >> UInt64.random(in: 0...63, using: &rng)
        case 1: return pick &+ UInt64.random(in: 0...2, using: &rng) &- 1
        default: return pick
        }
    }

    func set(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt64, width: Int) {
        for i in 0..<width where offset + i < bytes.count {
            bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i))
        }
    }

    func read(_ bytes: [UInt8], _ offset: Int, width: Int) -> UInt64? {
        guard offset >= 0, offset + width <= bytes.count else { return nil }
        return (0..<width).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
    }
}

/// The invariants, on one input: records an issue per violation.
private struct Checker {
    var failures = 0
    var messages = 0

    mutating func fail(_ what: String, _ input: [UInt8], _ limits: FrameLimits, sourceLocation: SourceLocation = #_sourceLocation) {
        failures += 1
        Issue.record("\(what)\nlimits: \(limits)\ninput: \(input.map { String($0, radix: 16) }.joined(separator: " "))",
                     sourceLocation: sourceLocation)
    }

    /// Decodes `input` whole and split, checks both; true if it decoded without error.
    mutating func check(_ input: [UInt8], limits initial: FrameLimits, split: Int, adoptHandshake: Bool) -> Bool {
        // Whole buffer, frame by frame.
        var limits = initial
        var decoded: [Message] = []
        var offset = 0
        var failure: WireError?
        input.withUnsafeBytes { all in
            while true {
                let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
                let frame: ParsedFrame?
                do throws(WireError) {
                    frame = try FrameParser.parse(rest, limits: limits)
                } catch {
                    failure = error
                    return
                }
                guard let frame else {
                    if rest.count >= 24, let header = try? FrameParser.parseHeader(rest, limits: limits) {
                        if header.frameSize <= rest.count { fail("complete frame reported incomplete", input, limits) }
                        if header.frameSize > limits.largestFrame { fail("header admits \(header.frameSize) > largestFrame", input, limits) }
                    } else if rest.count >= 24 {
                        fail("parse waits, parseHeader refuses or waits on 24 bytes", input, limits)
                    }
                    return
                }
                checkFrame(frame, rest, input, limits)
                let message: Message
                do throws(WireError) {
                    message = try Message(frame)
                } catch {
                    switch error {
                    case .badPayload, .reservedNotZero, .pageOutOfRange: break
                    default: fail("Message.init threw header-level \(error)", input, limits)
                    }
                    failure = error
                    return
                }
                messages += 1
                checkMessage(message, frame, rest, input, limits)
                decoded.append(message)
                offset += frame.size
                if adoptHandshake, let session = adopted(message, limits) { limits = session }
            }
        }

        // The same bytes through a StreamDecoder, in chunks of 1...n bytes (n from `split`).
        var decoder = StreamDecoder(limits: initial)
        var streamed: [Message] = []
        var streamFailure: WireError?
        var rng = SeededGenerator(seed: UInt64(split))
        let maxChunk = [1, 7, 30, 200, input.count + 1][split % 5]
        var at = 0
        feeding: while at < input.count {
            let size = min(Int.random(in: 1...maxChunk, using: &rng), input.count - at)
            decoder.feed(input[at..<at + size])
            at += size
            do throws(WireError) {
                while let message = try decoder.nextMessage() {
                    streamed.append(message)
                    if adoptHandshake, let session = adopted(message, decoder.limits) { decoder.limits = session }
                }
            } catch {
                streamFailure = error
                break feeding
            }
        }
        if streamed != decoded { fail("split decoding gave \(streamed.count) messages, whole \(decoded.count)", input, initial) }
        if streamFailure != failure { fail("split decoding failed with \(String(describing: streamFailure)), whole with \(String(describing: failure))", input, initial) }
        if failure == nil && decoder.bufferedByteCount != input.count - offset {
            fail("decoder holds \(decoder.bufferedByteCount) bytes, \(input.count - offset) undecoded", input, initial)
        }
        return failure == nil
    }

    /// The session limits a receiver adopts from a hello or welcome: must not trap.
    mutating func adopted(_ message: Message, _ limits: FrameLimits) -> FrameLimits? {
        guard limits.isHandshake else { return nil }
        let session: FrameLimits
        switch message {
        case .hello(let hello): session = .session(pageSize: hello.pageSize, pageCount: hello.pageCount)
        case .welcome(let welcome): session = .session(pageSize: welcome.pageSize, pageCount: welcome.pageCount)
        default: return nil
        }
        if session.largestFrame < 64 || session.isHandshake { fail("bad session limits \(session)", [], limits) }
        return session
    }

    mutating func checkFrame(_ frame: ParsedFrame, _ rest: UnsafeRawBufferPointer, _ input: [UInt8], _ limits: FrameLimits) {
        let header = frame.header
        if frame.size < 24 || frame.size > rest.count || frame.size != header.frameSize { fail("frame size \(frame.size) of \(rest.count)", input, limits) }
        if frame.payload.count != Int(header.length) { fail("payload \(frame.payload.count) != length \(header.length)", input, limits) }
        if frame.size > limits.largestFrame { fail("\(header.kind) frame of \(frame.size) > largestFrame \(limits.largestFrame)", input, limits) }
        var headerBytes = [UInt8](repeating: 0, count: 24)
        headerBytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
        if !headerBytes.elementsEqual(rest.prefix(24)) { fail("header does not re-encode to its bytes", input, limits) }
        for cut in [0, 4, 5, 6, 23, frame.size / 2, frame.size - 1] where cut < frame.size {
            let prefix = UnsafeRawBufferPointer(rebasing: rest[..<cut])
            do {
                if try FrameParser.parse(prefix, limits: limits) != nil { fail("a \(cut)-byte prefix parsed as a frame", input, limits) }
            } catch {
                fail("a \(cut)-byte prefix of an accepted frame was rejected: \(error)", input, limits)
            }
        }
        switch header.kind {
        case .request, .pages, .zeroPages, .unchanged, .have:
            let (end, overflow) = header.arg.addingReportingOverflow(UInt64(header.count))
            if limits.isHandshake || header.count == 0 || overflow || end > limits.pageCount {
                fail("\(header.kind) run \(header.arg)+\(header.count) accepted in \(limits.pageCount) pages", input, limits)
            }
            if header.kind != .have && Int(header.count) > limits.maxPagesPerFrame { fail("\(header.count) pages in a frame", input, limits) }
        default:
            break
        }
    }

    mutating func checkMessage(_ message: Message, _ frame: ParsedFrame, _ rest: UnsafeRawBufferPointer, _ input: [UInt8], _ limits: FrameLimits) {
        if message.kind != frame.header.kind { fail("\(frame.header.kind) decoded as \(message.kind)", input, limits) }
        switch message {
        case .staleSet(let indices), .hotSet(let indices):
            if indices.contains(where: { $0 >= limits.pageCount }) { fail("page index outside the arena", input, limits) }
        case .pages(_, let count, _, let bytes):
            if bytes.count != count * limits.pageSize { fail("\(bytes.count) bytes for \(count) pages", input, limits) }
        case .request(_, let count, let hashes):
            if !hashes.isEmpty && hashes.count != count { fail("\(hashes.count) hashes for \(count) pages", input, limits) }
        case .hello(let hello):
            if hello.pageSize <= 0 || hello.pageSize & (hello.pageSize - 1) != 0 || hello.resumeCount > hello.pageCount {
                fail("invalid hello accepted", input, limits)
            }
        case .welcome(let welcome):
            if welcome.sessionID == 0 || welcome.pageSize <= 0 || welcome.pageSize & (welcome.pageSize - 1) != 0 {
                fail("invalid welcome accepted", input, limits)
            }
        default:
            break
        }
        // Canonical: re-encoding gives the same bytes, which decode to the same message.
        let encoded = message.encoded()
        if !encoded.elementsEqual(rest.prefix(frame.size)) { fail("\(message) does not re-encode to its bytes", input, limits) }
        let again: Message? = encoded.withUnsafeBytes { bytes in
            guard let frame = try? FrameParser.parse(bytes, limits: limits) else { return nil }
            return try? Message(frame)
        }
        if again != message { fail("re-encoded \(message) decodes to \(String(describing: again))", input, limits) }
    }
}
