import Testing
import Wire

/// Found by the fuzzer in Fuzz/ (see Fuzz/README.md).
@Suite("FrameLimits never traps and covers every frame it admits")
struct FrameLimitsRegressionTests {
    /// A hello with 1-byte pages and 2⁶¹ pages passes the geometry check (2⁶¹ bytes fit
    /// in an Int), but the session limits of that geometry trapped: 4 bytes of guest
    /// state per page made `maxGuestState` Int.max and `largestFrame` overflowed adding
    /// the header. Geometries past 2⁶² pages wrapped the guest-state cap to 64 KiB.
    @Test(arguments: [(1, UInt64(1) << 61), (2, UInt64(1) << 61), (1, (UInt64(1) << 62) + 1), (1, UInt64(Int.max))])
    func sessionLimitsOfAnyAcceptedGeometry(pageSize: Int, pageCount: UInt64) throws {
        let hello = Hello(channel: .urgent, pageSize: pageSize, pageCount: pageCount)
        var decoder = StreamDecoder(limits: .handshake)
        decoder.feed(Message.hello(hello).encoded())
        guard case .hello(let got)? = try decoder.nextMessage() else {
            Issue.record("the hello was not accepted")
            return
        }
        let session = FrameLimits.session(pageSize: got.pageSize, pageCount: got.pageCount)
        #expect(session.largestFrame == .max)
        #expect(session.maxGuestState == .max)
    }

    /// With pages smaller than a PageHash, a request carrying hashes is larger than
    /// `maxPagesPerFrame` pages: `largestFrame` must still cover it, or a receive buffer
    /// sized by it cannot hold a frame the parser accepts.
    @Test func largestFrameCoversARequestWithHashes() throws {
        let limits = FrameLimits(pageSize: 8, pageCount: 1_000, maxPagesPerFrame: 300, maxControlPayload: 0, maxGuestState: 0)
        let request = Message.request(first: 0, count: 300, hashes: (0..<300).map { UInt128($0) }).encoded()
        let frame = try request.withUnsafeBytes { try FrameParser.parse($0, limits: limits)?.size }
        #expect(frame == request.count)
        #expect(limits.largestFrame >= request.count)
        // The agents' geometry is unchanged by the fix: 4 bytes of guest state per page is the largest.
        #expect(FrameLimits.session(pageSize: 4096, pageCount: 1 << 20).largestFrame == 24 + 4 << 20)
    }
}
