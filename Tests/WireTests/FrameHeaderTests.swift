import Testing
import Wire

@Suite("Frame header layout and header-only parsing")
struct FrameHeaderTests {
    @Test func encodeWritesTheDocumentedLayout() {
        var bytes = [UInt8](repeating: 0xEE, count: 26)
        bytes.withUnsafeMutableBytes { raw in
            // Deliberately unaligned: offset 1.
            FrameHeader.encode(
                kind: .pages, flags: 0x0102, length: 0x0304_0506, count: 0x0708_090A,
                arg: 0x1112_1314_1516_1718, into: raw.baseAddress! + 1)
        }
        #expect(bytes[0] == 0xEE && bytes[25] == 0xEE)
        #expect(Array(bytes[1..<5]) == Array("PCMA".utf8))
        #expect(Array(bytes[1..<25]) == rawHeader(.pages, flags: 0x0102, length: 0x0304_0506, count: 0x0708_090A, arg: 0x1112_1314_1516_1718))
        #expect(WireConstants.headerSize == 24)
    }

    @Test func parseHeaderReadsWhatEncodeWrote() throws {
        let header = FrameHeader(kind: .request, flags: 1, length: 32, count: 2, arg: 10)
        var bytes = [UInt8](repeating: 0, count: 24)
        bytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
        let parsed = try bytes.withUnsafeBytes { raw throws(WireError) in
            try FrameParser.parseHeader(raw, limits: testLimits)
        }
        #expect(parsed == header)
        #expect(parsed?.frameSize == 56)
    }

    @Test func parseHeaderWaitsForTwentyFourBytes() throws {
        let bytes = rawHeader(.zeroPages, count: 1, arg: 3)
        for n in 0..<24 {
            let parsed = try bytes[..<n].withUnsafeBytes { raw throws(WireError) in
                try FrameParser.parseHeader(raw, limits: testLimits)
            }
            #expect(parsed == nil)
        }
    }

    @Test func parseReturnsNilUntilThePayloadIsCompleteAndBorrowsIt() throws {
        let frame = Message.pages(first: 3, count: 1, flags: .demand, bytes: pageBytes(count: 1, seed: 9)).encoded()
        for n in 0..<frame.count {
            let parsed = try frame[..<n].withUnsafeBytes { raw throws(WireError) in
                try FrameParser.parse(raw, limits: testLimits)
            }
            #expect(parsed == nil)
        }
        try frame.withUnsafeBytes { raw in
            let parsed = try #require(try FrameParser.parse(raw, limits: testLimits))
            #expect(parsed.size == frame.count)
            #expect(parsed.payload.baseAddress == raw.baseAddress! + 24)
            #expect(parsed.payload.count == testPageSize)
            #expect(parsed.header == FrameHeader(kind: .pages, flags: 1, length: UInt32(testPageSize), count: 1, arg: 3))
        }
    }

    @Test func parseConsumesOnlyTheFirstFrame() throws {
        let bytes = Message.zeroPages(first: 1, count: 2).encoded() + Message.unchanged(first: 4, count: 1).encoded()
        try bytes.withUnsafeBytes { raw in
            let parsed = try #require(try FrameParser.parse(raw, limits: testLimits))
            #expect(parsed.size == 24)
            #expect(try Message(parsed) == .zeroPages(first: 1, count: 2))
        }
    }

    @Test func hotPathHeaderFollowedByPageBytesDecodes() throws {
        let page = pageBytes(count: 2, seed: 4)
        var frame = [UInt8](repeating: 0, count: 24)
        frame.withUnsafeMutableBytes { raw in
            FrameHeader.encode(
                kind: .pages, flags: PageFlags.refresh.rawValue, length: UInt32(page.count), count: 2, arg: 100,
                into: raw.baseAddress!)
        }
        frame += page
        #expect(try decodeAll([frame[...]]) == [.pages(first: 100, count: 2, flags: .refresh, bytes: page)])
    }

    @Test func frameFromSeparateHeaderAndPayloadBuffers() throws {
        let message = Message.request(first: 2, count: 2, hashes: [7, 8])
        let bytes = message.encoded()
        let header = try #require(try bytes.withUnsafeBytes { raw throws(WireError) in
            try FrameParser.parseHeader(raw, limits: testLimits)
        })
        let payload = Array(bytes[24...])
        let decoded = try payload.withUnsafeBytes { raw throws(WireError) in
            try Message(ParsedFrame(header: header, payload: raw, limits: testLimits))
        }
        #expect(decoded == message)
        // The header is re-validated and the payload size checked.
        #expect(throws: WireError.badLength(kind: .request, length: 16, expected: 32)) {
            try payload.withUnsafeBytes { raw in
                _ = try ParsedFrame(header: header, payload: UnsafeRawBufferPointer(rebasing: raw[..<16]), limits: testLimits)
            }
        }
        var tooLong = header
        tooLong.count = 1_000
        #expect(throws: WireError.tooManyPages(count: 1_000, max: 16)) {
            try payload.withUnsafeBytes { raw in
                _ = try ParsedFrame(header: tooLong, payload: raw, limits: testLimits)
            }
        }
    }
}
