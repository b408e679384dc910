import Testing
import Wire

@Suite("encoded() → StreamDecoder gives back the same message")
struct RoundTripTests {
    @Test func samplesCoverEveryKind() {
        #expect(Set(sampleMessages.map(\.kind)) == Set(FrameKind.allCases))
    }

    @Test(arguments: sampleMessages)
    func roundTrip(_ message: Message) throws {
        let bytes = message.encoded()
        #expect(bytes.count >= 24)
        #expect(try decodeAll([bytes[...]]) == [message])
    }

    @Test(arguments: sampleMessages.filter { [.hello, .welcome, .error].contains($0.kind) })
    func handshakeFramesDecodeBeforeTheHandshake(_ message: Message) throws {
        #expect(try decodeAll([message.encoded()[...]], limits: .handshake) == [message])
    }

    @Test func raisingLimitsAfterTheHandshakeAdmitsPageFrames() throws {
        let welcome = Message.welcome(Welcome(pageSize: testPageSize, pageCount: 1_000, sessionID: 5))
        var decoder = StreamDecoder()
        decoder.feed(welcome.encoded() + Message.zeroPages(first: 0, count: 1).encoded())
        guard case .welcome(let w)? = try decoder.nextMessage() else {
            Issue.record("expected welcome")
            return
        }
        decoder.limits = FrameLimits(pageSize: w.pageSize, pageCount: w.pageCount)
        #expect(try decoder.nextMessage() == .zeroPages(first: 0, count: 1))
        #expect(try decoder.nextMessage() == nil)
    }

    @Test func errorMessageIsCutAt1024BytesOnACharacterBoundary() throws {
        let long = String(repeating: "a", count: 1_023) + "é" + "tail"
        let decoded = try decodeAll([Message.error(code: .internalError, message: long).encoded()[...]])
        #expect(decoded == [.error(code: .internalError, message: String(repeating: "a", count: 1_023))])
        let exact = String(repeating: "b", count: 1_024)
        #expect(try decodeAll([Message.error(code: .busy, message: exact).encoded()[...]]) == [.error(code: .busy, message: exact)])
    }

    @Test func wireErrorCodesKeepTheirValues() {
        #expect(WireErrorCode.allCases.map(\.rawValue) == Array(1...9))
        #expect(WireError.unsupportedVersion(found: 2, supported: 1).code == .versionMismatch)
        #expect(WireError.badMagic(found: 0).code == .protocolViolation)
    }

    @Test func descriptionsNameTheReasonAndValues() {
        #expect(WireError.pageOutOfRange(first: 10, count: 5, pageCount: 12).description.contains("12"))
        #expect(WireError.badMagic(found: 0x2054_4547).description.contains("20544547"))
        #expect(WireError.frameTooLong(kind: .switchover, length: 99, max: 9).description == "switchover frame announces 99 payload bytes, more than the limit of 9")
        #expect(Message.pages(first: 1, count: 1, flags: [], bytes: pageBytes(count: 1, seed: 0)).description == "pages(first: 1, count: 1, flags: 0x0, 64 bytes)")
    }
}
