import Foundation
import Wire

/// The source agent: owns the guest's memory, accepts one destination,
/// switches the guest over, serves demand requests on the urgent connection
/// and streams every other page on the bulk one.
///
/// Threading: `run` drives a libuv loop on the calling thread; every other
/// method runs on that loop. The guest and the digest run on threads of their
/// own and reach the loop through `EventLoop.execute`.
public final class SourceAgent: @unchecked Sendable {
    private let configuration: SourceConfiguration
    private let loop: EventLoop
    private let arena: Arena
    private let guest: SourceGuest
    private var report: SourceReport
    private var listener: TCPListener?
    private var urgent: TCPConnection?
    private var bulk: TCPConnection?
    private var stream: BackgroundStream?
    /// Continues the background stream on the next turn when the socket took everything at once.
    private var pumpAgain: NextTurn?
    private var sessionID: UInt128 = 0
    private var digest: ArenaDigest?
    private var endSent = false
    private var startNanos: UInt64 = 0
    private var failure: String?
    private var finished = false
    private var setupError: AgentError?

    /// The report so far (also after a failure).
    public var currentReport: SourceReport { report }

    public init(configuration: SourceConfiguration) throws(AgentError) {
        self.configuration = configuration
        _ = try ByteSize(bytes: configuration.arenaSize).pages(of: configuration.pageSize)
        loop = try EventLoop()
        arena = try Arena(size: configuration.arenaSize, pageSize: configuration.pageSize, name: "source-arena")
        guest = SourceGuest(arena: arena, threads: configuration.guestThreads)
        report = SourceReport(arenaBytes: configuration.arenaSize, pageSize: configuration.pageSize)
    }

    /// Fills the guest, listens, and runs until the migration ends. Throws when it failed.
    public func run() throws(AgentError) -> SourceReport {
        configuration.progress("source: filling \(ByteSize(bytes: arena.size)) of guest memory (\(arena.pageCount) pages)")
        guest.fill()
        guest.startDirtying(pagesPerSecond: configuration.dirtyRate)
        loop.execute { [self] in
            do {
                listener = try TCPListener(loop: loop, address: configuration.listen, limits: .handshake,
                                           maxFrame: 64 * 1024) { [unowned self] in accepted($0) }
                configuration.onListening(listener!.address)
            } catch {
                self.setupError = error as? AgentError ?? .system("\(error)")
                guest.pause()
                loop.shutdown()
            }
        }
        loop.run()
        if let setupError { throw setupError }  // set on the loop, read after it ended
        report.guestPagesWritten = guest.pagesWritten
        if let failure {
            report.error = failure
            throw .migrationFailed(failure)
        }
        report.succeeded = true
        return report
    }

    // MARK: Handshake

    private func accepted(_ connection: TCPConnection) {
        connection.onFrame = { [unowned self, unowned connection] frame in
            handshake(connection, frame)
        }
        connection.onClose = { _ in }
        connection.startReading()
    }

    private func handshake(_ connection: TCPConnection, _ frame: ParsedFrame) {
        guard case .hello(let hello)? = try? Message(frame) else {
            connection.fail(.protocolViolation, "expected a hello frame first, got \(frame.header.kind)")
            return
        }
        switch hello.channel {
        case .urgent:
            guard urgent == nil else {
                connection.fail(.busy, "this source is already migrating to another destination")
                return
            }
            guard hello.pageSize == arena.pageSize, hello.pageCount == UInt64(arena.pageCount) else {
                let message = "arena size mismatch: source has \(arena.pageCount) pages of \(arena.pageSize) bytes "
                    + "(\(ByteSize(bytes: arena.size))), destination has \(hello.pageCount) pages of \(hello.pageSize) bytes "
                    + "(\(ByteSize(bytes: Int(hello.pageCount &* UInt64(hello.pageSize)))))"
                configuration.progress("source: refused a destination: \(message)")
                connection.fail(.sizeMismatch, message)
                return
            }
            startMigration(urgent: connection)
        case .bulk:
            guard let urgent, !urgent.isClosed, hello.sessionID == sessionID, bulk == nil else {
                connection.fail(.unknownSession, "no migration session \(hex(hello.sessionID)) waits for a bulk connection")
                return
            }
            startStreaming(bulk: connection)
        }
    }

    /// Switch-over: pause the guest, send its state, then serve demand requests.
    private func startMigration(urgent connection: TCPConnection) {
        startNanos = EventLoop.nowNanos()
        guest.pause()
        configuration.progress("source: destination connected; guest paused after writing \(guest.pagesWritten) pages")
        sessionID = UInt128(UInt64.random(in: 1...UInt64.max)) << 64 | UInt128(UInt64.random(in: 0...UInt64.max))
        urgent = connection
        connection.configureForDemand()
        connection.limits = limits
        connection.onFrame = { [unowned self] in urgentFrame($0) }
        connection.onClose = { [unowned self] in peerClosed("urgent", $0) }
        connection.send(.welcome(Welcome(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount), sessionID: sessionID)))
        connection.send(.switchover(arg: 0, state: guest.versions.encoded()))
        connection.flush()
        stream = BackgroundStream(arena: arena, pagesPerFrame: configuration.pagesPerFrame)
        computeDigest()
    }

    private var limits: FrameLimits {
        FrameLimits(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount),
                    maxPagesPerFrame: max(256, configuration.pagesPerFrame),
                    maxControlPayload: 64 * 1024, maxGuestState: arena.pageCount * 4)
    }

    private func startStreaming(bulk connection: TCPConnection) {
        bulk = connection
        connection.limits = limits
        connection.onFrame = { [unowned connection] frame in
            connection.fail(.protocolViolation, "unexpected \(frame.header.kind) frame on the bulk connection")
        }
        connection.onClose = { [unowned self] in peerClosed("bulk", $0) }
        connection.onWritable = { [unowned self] in pump() }
        pumpAgain = NextTurn(loop: loop) { [unowned self] in pump() }
        pump()
    }

    // MARK: Serving

    private func urgentFrame(_ frame: ParsedFrame) {
        guard let urgent, let stream else { return }
        switch frame.header.kind {
        case .request:
            let first = Int(frame.header.arg)
            let count = Int(frame.header.count)
            report.demandRequests += 1
            for page in first..<(first + count) { stream.markSent(page) }
            urgent.send(kind: .pages, flags: PageFlags.demand.rawValue, count: UInt32(count), arg: UInt64(first),
                        payload: UnsafeRawBufferPointer(start: arena.ioPage(first), count: count * arena.pageSize))
            report.demandPagesSent += count
        case .done:
            guard case .done(let received, let theirDigest)? = try? Message(frame) else {
                urgent.fail(.protocolViolation, "malformed done frame")
                return
            }
            report.destinationDigestMatch = theirDigest == digest?.value
            configuration.progress("source: destination received \(received) pages; digest \(report.destinationDigestMatch ? "matches" : "DIFFERS")")
            if !report.destinationDigestMatch { failure = "the destination's digest differs from the source's" }
            finish()
        default:
            urgent.fail(.protocolViolation, "unexpected \(frame.header.kind) frame on the urgent connection")
        }
    }

    private func pump() {
        guard let bulk, let stream, !endSent else { return }
        guard !configuration.background || stream.pump(bulk, highWater: configuration.bulkHighWater) else {
            // No write left pending means no completion will call us: come back next turn.
            if bulk.backlog == 0 { pumpAgain?.schedule() }
            return
        }
        report.backgroundPagesSent = stream.pagesSent
        guard let digest else { return }  // sent when the digest is ready
        bulk.send(.endOfStream(pagesSent: UInt64(stream.pagesSent), digest: digest.value))
        bulk.flush()
        endSent = true
        configuration.progress("source: background stream complete (\(stream.pagesSent) pages)")
    }

    /// Digests the frozen arena on a thread of its own and hands the result to the loop.
    private func computeDigest() {
        let arena = self.arena
        let loop = self.loop
        let agent = self
        Thread.detachNewThread {
            let value = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size), pageSize: arena.pageSize)
            loop.execute {
                agent.digest = value
                agent.report.digest = hex(value.value)
                agent.pump()
            }
        }
    }

    // MARK: Ending

    private func peerClosed(_ which: String, _ reason: TCPConnection.CloseReason) {
        guard !finished else { return }
        let sent = (stream?.pagesSent ?? 0) + report.demandPagesSent
        failure = "destination's \(which) connection ended before the migration finished (\(reason)); "
            + "\(sent) of \(arena.pageCount) pages had been sent"
        finish()
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        report.elapsedSeconds = Double(EventLoop.nowNanos() - startNanos) / 1e9
        urgent?.close()
        bulk?.close()
        listener?.close()
        pumpAgain?.close()
        loop.shutdown()
    }
}
