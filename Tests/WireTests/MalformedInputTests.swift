import Testing
import Wire

@Suite("Malformed input is rejected with the specific reason")
struct MalformedInputTests {
    @Test func garbageBytes() {
        let http = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(firstError(http) == .badMagic(found: 0x2054_4547))
        var rng = SeededGenerator(seed: 99)
        let noise = (0..<100).map { _ in UInt8.random(in: 0...255, using: &rng) }
        guard case .badMagic? = firstError(noise) else {
            Issue.record("random bytes must fail on the magic")
            return
        }
    }

    @Test func wrongMagicIsRejectedFromFourBytes() {
        #expect(firstError([0x50, 0x43, 0x4D, 0x42]) == .badMagic(found: 0x424D_4350))
        #expect(firstError(rawHeader(kind: 5, count: 1, magic: 0x414D_4351)) == .badMagic(found: 0x414D_4351))
        // A correct prefix alone is just incomplete.
        #expect(firstError([0x50, 0x43, 0x4D]) == nil)
    }

    @Test func wrongVersion() {
        // Version 1 agents (before the key proof), version 2 (before the hot set) and
        // version 3 (which refuses zeroPages frames mid-migration) are refused at the first header.
        #expect(firstError(Array(rawHeader(kind: 5, version: 1).prefix(5))) == .unsupportedVersion(found: 1, supported: 4))
        #expect(firstError(Array(rawHeader(kind: 5, version: 2).prefix(5))) == .unsupportedVersion(found: 2, supported: 4))
        #expect(firstError(Array(rawHeader(kind: 5, version: 3).prefix(5))) == .unsupportedVersion(found: 3, supported: 4))
        #expect(firstError(Array(rawHeader(kind: 5, version: 5).prefix(5))) == .unsupportedVersion(found: 5, supported: 4))
        #expect(firstError(rawHeader(kind: 5, version: 0)) == .unsupportedVersion(found: 0, supported: 4))
    }

    @Test func unknownKind() {
        #expect(firstError(rawHeader(kind: 0)) == .unknownKind(0))
        #expect(firstError(Array(rawHeader(kind: 16).prefix(6))) == .unknownKind(16))
        #expect(firstError(rawHeader(kind: 255)) == .unknownKind(255))
    }

    @Test func frameLongerThanAllowedIsRejectedWithOnlyTheHeader() {
        #expect(firstError(rawHeader(.switchover, length: .max)) == .frameTooLong(kind: .switchover, length: Int(UInt32.max), max: 16 << 20))
        #expect(firstError(rawHeader(.pages, length: .max, count: 1, arg: 0)) == .frameTooLong(kind: .pages, length: Int(UInt32.max), max: 16 * testPageSize))
        #expect(firstError(rawHeader(.hello, length: 41), limits: .handshake) == .frameTooLong(kind: .hello, length: 41, max: 40))
        #expect(firstError(rawHeader(.error, length: 1_027), limits: .handshake) == .frameTooLong(kind: .error, length: 1_027, max: 1_026))
        #expect(firstError(rawHeader(.zeroPages, length: 1, count: 1)) == .frameTooLong(kind: .zeroPages, length: 1, max: 0))
        #expect(firstError(rawHeader(.staleSet, length: 65_544, count: 8_193)) == .frameTooLong(kind: .staleSet, length: 65_544, max: 65_536))
    }

    @Test func pageIndexOutOfRange() {
        #expect(firstError(rawHeader(.zeroPages, count: 1, arg: 1_000)) == .pageOutOfRange(first: 1_000, count: 1, pageCount: 1_000))
        #expect(firstError(rawHeader(.unchanged, count: 2, arg: 999)) == .pageOutOfRange(first: 999, count: 2, pageCount: 1_000))
        #expect(firstError(rawHeader(.request, count: 4, arg: .max - 1)) == .pageOutOfRange(first: .max - 1, count: 4, pageCount: 1_000))
        #expect(firstError(rawHeader(.have, length: 1, count: 2, arg: .max)) == .pageOutOfRange(first: .max, count: 2, pageCount: 1_000))
        // With an arena that reaches UInt64.max, first + count must not wrap into range.
        let huge = FrameLimits(pageSize: 1, pageCount: .max)
        #expect(firstError(rawHeader(.zeroPages, count: 2, arg: .max), limits: huge) == .pageOutOfRange(first: .max, count: 2, pageCount: .max))
        #expect(firstError(rawHeader(.zeroPages, count: 2, arg: .max - 2), limits: huge) == nil)
        // A stale index is checked against the page count too.
        #expect(firstError(Message.staleSet([3, 1_000]).encoded()) == .pageOutOfRange(first: 1_000, count: 1, pageCount: 1_000))
    }

    @Test(arguments: [FrameKind.request, .pages, .zeroPages, .unchanged, .have])
    func emptyPageRun(_ kind: FrameKind) {
        #expect(firstError(rawHeader(kind, count: 0, arg: 1)) == .emptyPageRun(kind: kind))
    }

    @Test func tooManyPages() {
        #expect(firstError(rawHeader(.zeroPages, count: 17)) == .tooManyPages(count: 17, max: 16))
        #expect(firstError(rawHeader(.pages, length: 17 * 64, count: 17)) == .tooManyPages(count: 17, max: 16))
        let defaults = FrameLimits(pageSize: 4096, pageCount: 1 << 20)
        #expect(firstError(rawHeader(.request, count: 257), limits: defaults) == .tooManyPages(count: 257, max: 256))
        #expect(firstError(rawHeader(.request, count: 256), limits: defaults) == nil)
    }

    @Test func wrongPayloadLength() {
        #expect(firstError(rawHeader(.pages, length: 64, count: 2) + pageBytes(count: 2, seed: 0)) == .badLength(kind: .pages, length: 64, expected: 128))
        #expect(firstError(rawHeader(.request, flags: 1, length: 16, count: 2)) == .badLength(kind: .request, length: 16, expected: 32))
        #expect(firstError(rawHeader(.request, length: 16, count: 1)) == .badLength(kind: .request, length: 16, expected: 0))
        #expect(firstError(rawHeader(.hello, length: 36), limits: .handshake) == .badLength(kind: .hello, length: 36, expected: 40))
        #expect(firstError(rawHeader(.welcome, length: 0), limits: .handshake) == .badLength(kind: .welcome, length: 0, expected: 32))
        #expect(firstError(rawHeader(.error, length: 1), limits: .handshake) == .badLength(kind: .error, length: 1, expected: 2))
        #expect(firstError(rawHeader(.done, length: 8)) == .badLength(kind: .done, length: 8, expected: 16))
        #expect(firstError(rawHeader(.staleSet, length: 8, count: 2)) == .badLength(kind: .staleSet, length: 8, expected: 16))
        #expect(firstError(rawHeader(.have, length: 1, count: 9)) == .badLength(kind: .have, length: 1, expected: 2))
    }

    @Test func invalidUTF8InError() {
        let bytes = rawHeader(.error, length: 5) + [1, 0, 0x61, 0xFF, 0xFE]
        #expect(firstError(bytes)?.badPayloadKind == .error)
        #expect(firstError(bytes)?.description.contains("UTF-8") == true)
        let unknownCode = rawHeader(.error, length: 2) + [99, 0]
        #expect(firstError(unknownCode) == .badPayload(kind: .error, reason: "unknown error code 99"))
    }

    @Test func channelValueTwo() {
        var hello = Message.hello(Hello(channel: .urgent, pageSize: 4096, pageCount: 10)).encoded()
        hello[24] = 2
        #expect(firstError(hello, limits: .handshake) == .badPayload(kind: .hello, reason: "channel 2 is neither urgent (0) nor bulk (1)"))
    }

    @Test func handshakePayloadChecks() {
        func hello(_ edit: (inout [UInt8]) -> Void) -> WireError? {
            var bytes = Message.hello(Hello(channel: .urgent, pageSize: 4096, pageCount: 10)).encoded()
            edit(&bytes)
            return firstError(bytes, limits: .handshake)
        }
        #expect(hello { $0[25] = 1 } == .reservedNotZero(kind: .hello, field: "bytes 1-3", value: 1))
        #expect(hello { $0[28] = 0; $0[29] = 0x30 }?.badPayloadKind == .hello)  // page size 0x3000: not a power of two
        #expect(hello { $0[24] = 1 }?.badPayloadKind == .hello)  // bulk without a session id
        #expect(hello { $0[56] = 1 }?.badPayloadKind == .hello)  // resume count on a new session
        var welcome = Message.welcome(Welcome(pageSize: 4096, pageCount: 10, sessionID: 1)).encoded()
        welcome[40] = 0
        #expect(firstError(welcome, limits: .handshake)?.badPayloadKind == .welcome)  // session id 0
    }

    @Test func reservedHeaderFieldsAndFlags() {
        #expect(firstError(rawHeader(.zeroPages, flags: 1, count: 1)) == .reservedNotZero(kind: .zeroPages, field: "flags", value: 1))
        #expect(firstError(rawHeader(.pages, flags: 4, length: 64, count: 1)) == .reservedNotZero(kind: .pages, field: "flags", value: 4))
        #expect(firstError(rawHeader(.request, flags: 0x8001, length: 16, count: 1)) == .reservedNotZero(kind: .request, field: "flags", value: 0x8000))
        #expect(firstError(rawHeader(.done, length: 16, count: 3)) == .reservedNotZero(kind: .done, field: "count", value: 3))
        #expect(firstError(rawHeader(.staleSet, arg: 7)) == .reservedNotZero(kind: .staleSet, field: "arg", value: 7))
        #expect(firstError(rawHeader(.have, length: 1, count: 3) + [0b1111]) == .reservedNotZero(kind: .have, field: "bitmap padding bits", value: 1))
    }

    @Test(arguments: FrameKind.allCases.filter { ![.hello, .welcome, .error, .authNonce, .authProof].contains($0) })
    func pageAndSessionFramesBeforeTheHandshake(_ kind: FrameKind) {
        #expect(firstError(rawHeader(kind, count: 1), limits: .handshake) == .unexpectedFrame(kind: kind))
    }

    @Test func theDecoderStaysFailed() throws {
        var decoder = StreamDecoder(limits: testLimits)
        let good = Message.zeroPages(first: 0, count: 1).encoded()
        decoder.feed(good + rawHeader(kind: 42) + good)
        #expect(try decoder.nextMessage() == .zeroPages(first: 0, count: 1))
        #expect(throws: WireError.unknownKind(42)) { try decoder.nextMessage() }
        decoder.feed(good)
        decoder.limits = FrameLimits(pageSize: 4096, pageCount: 10)
        for _ in 0..<3 {
            #expect(throws: WireError.unknownKind(42)) { try decoder.nextMessage() }
        }
        #expect(decoder.failure == .unknownKind(42))
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func negativeOrAbsurdLimitsDoNotTrap() {
        let weird = FrameLimits(pageSize: .max, pageCount: .max, maxPagesPerFrame: .max, maxControlPayload: -5, maxGuestState: -1)
        #expect(firstError(rawHeader(.pages, length: 8, count: 1), limits: weird) == .badLength(kind: .pages, length: 8, expected: .max))
        #expect(firstError(rawHeader(.staleSet, length: 8, count: 1), limits: weird) == .frameTooLong(kind: .staleSet, length: 8, max: 0))
        #expect(firstError(rawHeader(.switchover, length: 1), limits: weird) == .frameTooLong(kind: .switchover, length: 1, max: 0))
    }

    /// Random corruption of a valid stream must end in a clean error or clean messages, never a trap.
    @Test func corruptedStreamsNeverTrap() {
        var rng = SeededGenerator(seed: 7)
        let stream = sampleMessages.flatMap { $0.encoded() }
        var failures = 0
        for _ in 0..<2_000 {
            var bytes = stream
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if firstError(bytes) != nil { failures += 1 }
        }
        #expect(failures > 1_000)
        // Valid magic and version, random everything else.
        for _ in 0..<20_000 {
            var bytes = rawHeader(kind: UInt8.random(in: 0...14, using: &rng), flags: UInt16(truncatingIfNeeded: rng.next()),
                                  length: UInt32(truncatingIfNeeded: rng.next() >> UInt64.random(in: 0...63, using: &rng)),
                                  count: UInt32(truncatingIfNeeded: rng.next() >> UInt64.random(in: 0...63, using: &rng)),
                                  arg: rng.next() >> UInt64.random(in: 0...63, using: &rng))
            bytes += (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = firstError(bytes)
            _ = firstError(bytes, limits: .handshake)
        }
    }
}

@Suite("key proof frames")
struct AuthFrameTests {
    @Test func authTokensMustBeExactly32Bytes() {
        #expect(firstError(rawHeader(.authNonce, length: 31) + Array(repeating: 0, count: 31), limits: .handshake)
            == .badLength(kind: .authNonce, length: 31, expected: 32))
        #expect(firstError(rawHeader(.authProof, length: 33) + Array(repeating: 0, count: 33), limits: .handshake)
            == .frameTooLong(kind: .authProof, length: 33, max: 32))
        #expect(firstError(rawHeader(.authNonce, length: 32, count: 1) + Array(repeating: 0, count: 32), limits: .handshake)
            == .reservedNotZero(kind: .authNonce, field: "count", value: 1))
    }

    @Test func authFramesParseBeforeTheHandshake() throws {
        let frame = Message.authNonce(Array(repeating: 7, count: 32)).encoded()
        #expect(try decodeAll([frame[...]], limits: .handshake) == [.authNonce(Array(repeating: 7, count: 32))])
    }

    @Test("the encrypt flag of authNonce round-trips; no other flag is defined, and authProof has none")
    func authNonceFlags() throws {
        let nonce = Array(repeating: UInt8(7), count: 32)
        let frame = Message.authNonce(nonce, options: .encrypt).encoded()
        #expect(frame[6] == 1 && frame[7] == 0, "bit 0 of the header's flags")
        #expect(try decodeAll([frame[...]], limits: .handshake) == [.authNonce(nonce, options: .encrypt)])
        #expect(firstError(rawHeader(.authNonce, flags: 2, length: 32) + nonce, limits: .handshake)
            == .reservedNotZero(kind: .authNonce, field: "flags", value: 2))
        #expect(firstError(rawHeader(.authProof, flags: 1, length: 32) + nonce, limits: .handshake)
            == .reservedNotZero(kind: .authProof, field: "flags", value: 1))
    }
}
