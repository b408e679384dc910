import Foundation
import MigrateAgent
import Testing
import Wire

/// Access traces of a memory image (`source --memory-file --record-trace /
/// --prefetch-trace`), with the real source binary. The destination is
/// written by the test where the pages it asks for and the order it receives
/// them in must be exact (it requests a known list of pages, and sees the
/// background stream frame by frame), and is the real destination where the
/// image must simply arrive whole. Every wait has a deadline (10 s per
/// socket read, bounded process waits).
@Suite("access traces of a memory image", .serialized)
struct TraceTests {
    static let pages = 1024
    static let pageSize = 4096

    /// An image, its bytes and digest, and a scratch directory.
    struct Setup {
        let scratch = AgentHarness.scratchDirectory()
        let image: String
        let bytes: [UInt8]
        var digest: UInt128 { bytes.withUnsafeBytes { ArenaDigest.of(arena: $0, pageSize: TraceTests.pageSize).value } }

        init() throws {
            image = scratch.appendingPathComponent("memory.img").path
            bytes = try MemoryFileTests.makeImage(pages: TraceTests.pages, at: image)
        }

        func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

        func page(_ index: Int) -> ArraySlice<UInt8> { bytes[(index * TraceTests.pageSize)..<((index + 1) * TraceTests.pageSize)] }
    }

    /// A destination written by the test: joins the session (`--insecure`),
    /// requests exactly the pages it is told to, records the order in which the
    /// background stream delivers pages, checks every page against the image,
    /// and confirms with the digest of what it received.
    final class ScriptedDestination {
        let urgent: FakePeer
        let bulk: FakePeer
        let limits = FrameLimits.session(pageSize: TraceTests.pageSize, pageCount: UInt64(TraceTests.pages))
        /// Pages in the order the background stream sent them.
        private(set) var streamOrder: [Int] = []
        private var received: [UInt128?] = Array(repeating: nil, count: TraceTests.pages)
        private let setup: Setup

        init(address: String, setup: Setup) throws {
            self.setup = setup
            urgent = try FakePeer.connect(to: address)
            urgent.send(Message.hello(Hello(channel: .urgent, pageSize: TraceTests.pageSize, pageCount: UInt64(TraceTests.pages))).encoded())
            guard case .welcome(let welcome)? = urgent.nextMessage() else { throw FakePeer.PeerError.failed("no welcome") }
            bulk = try FakePeer.connect(to: address)
            bulk.send(Message.hello(Hello(channel: .bulk, pageSize: TraceTests.pageSize, pageCount: UInt64(TraceTests.pages),
                                          sessionID: welcome.sessionID)).encoded())
            // The switch-over frame comes first on the bulk connection: demand may be asked for from now on.
            guard case .switchover? = bulk.nextMessage(limits: limits) else { throw FakePeer.PeerError.failed("no switch-over") }
        }

        private func keep(first: UInt64, count: Int, bytes: [UInt8]) {
            for i in 0..<count {
                let index = Int(first) + i
                let page = bytes[(i * TraceTests.pageSize)..<((i + 1) * TraceTests.pageSize)]
                #expect(page.elementsEqual(setup.page(index)), "page \(index) differs from the image")
                received[index] = page.withUnsafeBytes { PageHash.hash($0) }
            }
        }

        /// Requests `pages`, one request frame each, all in one write, and reads every answer.
        func request(_ pages: [Int]) {
            urgent.send(pages.flatMap { Message.request(first: UInt64($0), count: 1, hashes: []).encoded() })
            var answered: [Int] = []
            for _ in pages {
                guard case .pages(let first, let count, let flags, let bytes)? = urgent.nextMessage(limits: limits) else {
                    Issue.record("no answer to a demand request")
                    return
                }
                #expect(flags.contains(.demand))
                keep(first: first, count: count, bytes: bytes)
                answered.append(Int(first))
            }
            #expect(answered == pages, "each request answered in turn")
        }

        /// Reads the background stream to its end; returns the source's digest.
        func readStream() -> UInt128? {
            while let message = bulk.nextMessage(limits: limits) {
                switch message {
                case .pages(let first, let count, _, let bytes):
                    keep(first: first, count: count, bytes: bytes)
                    streamOrder += (Int(first)..<(Int(first) + count))
                case .zeroPages(let first, let count):  // all-zero pages come without their bytes
                    keep(first: first, count: count, bytes: [UInt8](repeating: 0, count: count * TraceTests.pageSize))
                    streamOrder += (Int(first)..<(Int(first) + count))
                case .endOfStream(_, let digest):
                    return digest
                default:
                    Issue.record("unexpected \(message.kind) on the bulk connection")
                    return nil
                }
            }
            Issue.record("the bulk connection ended without endOfStream")
            return nil
        }

        /// Says done with the digest of what arrived, and reads the source's acknowledgement.
        func confirm() {
            var digest = ArenaDigest()
            for (index, hash) in received.enumerated() {
                guard let hash else {
                    Issue.record("page \(index) never arrived")
                    return
                }
                digest.add(page: UInt64(index), hash: hash)
            }
            #expect(digest.value == setup.digest)
            urgent.send(Message.done(pagesReceived: UInt64(TraceTests.pages), digest: digest.value).encoded())
            guard case .done? = urgent.nextMessage(limits: limits) else {
                Issue.record("no acknowledgement of done")
                return
            }
        }
    }

    static func sourceReport(_ path: String) throws -> SourceReport {
        try #require(ReportFormatting.read(SourceReport.self, fromFile: path), "no source report at \(path)")
    }

    @Test("a restore records the pages first requested on demand; the next restore streams them first, in that order")
    func recordThenPrefetch() throws {
        let setup = try Setup()
        let trace = setup.path("first.trace")
        let requested = [700, 3, 512, 3, 99, 1000, 700, 42]
        let firstRequests = [700, 3, 512, 99, 1000, 42]

        // First restore: record.
        let report1 = setup.path("s1.json")
        let (source1, address1) = try AgentHarness.startSource(arena: nil, extra: [
            "--memory-file", setup.image, "--insecure", "--record-trace", trace, "--report-json", report1,
        ])
        defer { source1.terminate() }
        let destination1 = try ScriptedDestination(address: address1, setup: setup)
        destination1.request(requested)
        #expect(destination1.readStream() == setup.digest)
        destination1.confirm()
        #expect(source1.wait(seconds: 30) == 0, "\(source1.capturedOutput)")
        #expect(source1.capturedOutput.contains("wrote the access trace to \(trace): 6 pages"), "\(source1.capturedOutput)")
        let recorded = try AccessTraceFile.read(trace)
        #expect(recorded.pages == firstRequests, "each page once, in order of first request; background pages are not in it")
        #expect(recorded.image == AccessTrace.Image(pageSize: Self.pageSize, pageCount: Self.pages, contentHash: setup.digest))
        let r1 = try Self.sourceReport(report1)
        #expect(r1.traceFile == trace && r1.tracePagesRecorded == 6 && r1.tracePartial == false)
        #expect(r1.distinctDemandPages == 6 && r1.prefetchTraceFile == nil)

        // Second restore: prefetch from the first trace while recording a new one.
        let report2 = setup.path("s2.json")
        let trace2 = setup.path("second.trace")
        let (source2, address2) = try AgentHarness.startSource(arena: nil, extra: [
            "--memory-file", setup.image, "--insecure", "--prefetch-trace", trace, "--record-trace", trace2,
            "--report-json", report2,
        ])
        defer { source2.terminate() }
        let destination2 = try ScriptedDestination(address: address2, setup: setup)
        #expect(destination2.readStream() == setup.digest)
        let rest = (0..<Self.pages).filter { !firstRequests.contains($0) }
        // Compared in parts, so that a failure prints the head, not a thousand indices.
        #expect(Array(destination2.streamOrder.prefix(firstRequests.count)) == firstRequests, "the trace's pages first, in its order")
        #expect(destination2.streamOrder.count == Self.pages)
        #expect(destination2.streamOrder.dropFirst(firstRequests.count).elementsEqual(rest), "then the rest ascending")
        // Late demand: one page the trace predicted, one it did not.
        destination2.request([512, 5])
        destination2.confirm()
        #expect(source2.wait(seconds: 30) == 0, "\(source2.capturedOutput)")
        #expect(source2.capturedOutput.contains("prefetch trace \(trace): its 6 pages go first"), "\(source2.capturedOutput)")
        let r2 = try Self.sourceReport(report2)
        #expect(r2.prefetchTraceFile == trace && r2.tracePagesPrefetched == 6)
        #expect(r2.demandPagesPredicted == 1 && r2.distinctDemandPages == 2)
        #expect(r2.destinationDigestMatch)
        #expect(try AccessTraceFile.read(trace2).pages == [512, 5], "the second restore's own trace")
    }

    @Test("the real destination receives the whole image with a prefetch trace; the digests match")
    func prefetchToRealDestination() throws {
        let setup = try Setup()
        let trace = setup.path("hand-made.trace")
        let head = [1023, 0, 511, 8, 9, 10, 300]
        try AccessTraceFile.write(AccessTrace(image: .init(pageSize: Self.pageSize, pageCount: Self.pages, contentHash: setup.digest),
                                              pages: head), to: trace)
        let sourceReport = setup.path("s.json")
        let destinationReport = setup.path("d.json")
        let (source, address) = try AgentHarness.startSource(arena: nil, extra: [
            "--memory-file", setup.image, "--prefetch-trace", trace, "--report-json", sourceReport,
        ])
        defer { source.terminate() }
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "4MiB", "--no-guest", "--report-json", destinationReport,
        ])
        defer { destination.terminate() }
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "\(source.capturedOutput)")
        let s = try Self.sourceReport(sourceReport)
        #expect(s.tracePagesPrefetched == head.count && s.backgroundPagesSent == Self.pages)
        let hex = String(setup.digest, radix: 16)
        #expect(s.destinationDigestMatch && s.digest == String(repeating: "0", count: 32 - hex.count) + hex)
        let d = try #require(ReportFormatting.read(DestinationReport.self, fromFile: destinationReport))
        #expect(d.digestMatch)
    }

    @Test("a destination lost after switch-over still leaves a partial trace, said so")
    func partialTrace() throws {
        let setup = try Setup()
        let trace = setup.path("partial.trace")
        let report = setup.path("s.json")
        let (source, address) = try AgentHarness.startSource(arena: nil, extra: [
            "--memory-file", setup.image, "--insecure", "--record-trace", trace, "--reconnect-timeout", "0",
            "--report-json", report,
        ])
        defer { source.terminate() }
        do {
            let destination = try ScriptedDestination(address: address, setup: setup)
            destination.request([17, 4, 17, 900])
        }  // both connections close here
        #expect(source.wait(seconds: 30) == 1, "\(source.capturedOutput)")
        #expect(source.capturedOutput.contains("wrote a PARTIAL access trace to \(trace): 3 pages"), "\(source.capturedOutput)")
        #expect(try AccessTraceFile.read(trace).pages == [17, 4, 900])
        let r = try Self.sourceReport(report)
        #expect(r.tracePartial == true && r.tracePagesRecorded == 3 && !r.succeeded)
    }

    @Test("a trace of another image, a corrupt trace, a trace without an image: refused before listening, by reason")
    func refusals() throws {
        let setup = try Setup()
        let trace = setup.path("t.trace")
        try AccessTraceFile.write(AccessTrace(image: .init(pageSize: Self.pageSize, pageCount: Self.pages, contentHash: setup.digest),
                                              pages: [1, 2, 3]), to: trace)
        let other = try Setup()  // same size, other contents
        let smaller = setup.path("small.img")
        _ = try MemoryFileTests.makeImage(pages: 512, at: smaller)
        let truncated = setup.path("truncated.trace")
        #expect(FileManager.default.createFile(atPath: truncated,
                                               contents: try Data(contentsOf: URL(fileURLWithPath: trace)).dropLast(5)))
        let cases: [(arguments: [String], expected: String)] = [
            (["--memory-file", other.image, "--prefetch-trace", trace],
             "the trace \(trace) was recorded for an image of 1024 pages of 4096 bytes with content hash"),
            (["--memory-file", other.image, "--prefetch-trace", trace], "same size, the contents differ"),
            (["--memory-file", smaller, "--prefetch-trace", trace], "has 512 pages of 4096 bytes: the size differs"),
            (["--memory-file", setup.image, "--prefetch-trace", truncated], "the trace \(truncated) is truncated"),
            (["--memory-file", setup.image, "--prefetch-trace", setup.image], "is not an access trace"),
            (["--prefetch-trace", trace], "--prefetch-trace needs --memory-file"),
            (["--record-trace", trace], "--record-trace needs --memory-file"),
            (["--memory-file", setup.image, "--record-trace", "/nonexistent-dir/t.trace"],
             "cannot write the access trace to /nonexistent-dir/t.trace"),
            (["--memory-file", setup.image, "--prefetch-trace", trace, "--no-background"], "does nothing with --no-background"),
            (["--memory-file", setup.image, "--record-trace", setup.image], "would replace the memory image it traces"),
        ]
        for (arguments, expected) in cases {
            let source = try AgentHarness.start(["source", "--listen", "127.0.0.1:0"] + arguments)
            #expect(source.wait(seconds: 30) != 0, "\(arguments)")
            #expect(source.capturedOutput.contains(expected), "\(arguments): \(source.capturedOutput)")
            #expect(!source.capturedOutput.contains("listening on"), "refused before listening: \(arguments)")
        }
    }
}
