import Foundation
import Wire

/// The source agent: owns the guest's memory, accepts one destination,
/// optionally pre-copies while the guest still runs here, switches the guest
/// over, then serves demand requests on the urgent connection and streams the
/// rest on the bulk one. This type keeps the phases and wires the parts:
///
/// - `DemandServer` answers requests on the urgent connection;
/// - `PageStream` sends runs of pages with backpressure (pre-copy rounds, then
///   the background stream, which skips what demand already sent);
/// - `PrecopyRounds` drives rounds and dirty tracking until switch-over;
/// - `DigestTask` digests the frozen arena off the loop.
///
/// Threading: `run` drives a libuv loop on the calling thread; every other
/// method runs on that loop (asserted in debug builds). The guest and the
/// digest run on threads of their own and reach the loop through `EventLoop.execute`.
public final class SourceAgent: @unchecked Sendable {
    private enum Phase { case awaitingDestination, precopy, postcopy, finished }

    private let configuration: SourceConfiguration
    private let loop: EventLoop
    private let arena: Arena
    private let guest: any SourceWorkload
    private let sessionLimits: FrameLimits
    private let busyPoll: BusyPoll
    /// Pages sent since switch-over, on demand or in the background.
    private let sentSinceSwitchover: PageSet
    // Loop thread only, like everything below.
    private var report: SourceReport
    private var phase = Phase.awaitingDestination
    private var listener: TCPListener?
    private var urgent: TCPConnection?
    private var bulk: TCPConnection?
    private var demand: DemandServer?
    private var sessionID: UInt128 = 0
    /// The current stream: a pre-copy round, then the post-copy background stream.
    private var stream: PageStream?
    /// Continues the stream on the next turn when the socket took everything at once.
    private var pumpAgain: NextTurn?
    private var tracker: (any DirtyTracking)?
    private var precopy: PrecopyRounds?
    private var watchdog: LoopTimer?
    private var digest: ArenaDigest?
    private var endSent = false
    private var startNanos: UInt64 = 0
    private var failure: String?
    private var setupError: AgentError?

    /// The report so far (also after a failure).
    public var currentReport: SourceReport { reportWithCounts() }

    public init(configuration: SourceConfiguration) throws(AgentError) {
        guard (1...FrameLimits.sessionPagesPerFrame).contains(configuration.pagesPerFrame) else {
            throw .invalidArgument("pages per frame must be 1...\(FrameLimits.sessionPagesPerFrame), "
                + "not \(configuration.pagesPerFrame)")
        }
        self.configuration = configuration
        _ = try ByteSize(bytes: configuration.arenaSize).pages(of: configuration.pageSize)
        loop = try EventLoop()
        arena = try Arena(size: configuration.arenaSize, pageSize: configuration.pageSize, name: "source-arena")
        guest = configuration.workload(arena)
        sessionLimits = .session(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount))
        busyPoll = BusyPoll(loop: loop, windowMicros: configuration.busyPollMicros)
        sentSinceSwitchover = PageSet(pageCount: arena.pageCount)
        report = SourceReport(arenaBytes: configuration.arenaSize, pageSize: configuration.pageSize)
    }

    /// Fills the guest, listens, and runs until the migration ends. Throws when it failed.
    public func run() throws(AgentError) -> SourceReport {
        configuration.progress("source: filling \(ByteSize(bytes: arena.size)) of guest memory (\(arena.pageCount) pages)")
        guest.populate()
        if configuration.precopyRounds > 0 {
            let probe: KernelProbe
            do { probe = try KernelProbe.run() } catch { throw .kernel(error) }
            let method = try DirtyTrackingMethod.select(configuration.dirtyTracking, probe: probe)
            // Armed before the guest writes again, so that no write escapes the first round.
            let tracker = try method.makeTracker(arena: arena)
            self.tracker = tracker
            precopy = PrecopyRounds(loop: loop, arena: arena, tracker: tracker, maxRounds: configuration.precopyRounds,
                                    convergePages: configuration.convergePages, pagesPerFrame: configuration.pagesPerFrame)
            report.dirtyTracking = method.rawValue
            configuration.progress("source: pre-copy dirty tracking: \(method == .pagemapScan ? "userfaultfd WP_ASYNC + PAGEMAP_SCAN" : "synchronous userfaultfd write-protect faults (the kernel lacks WP_ASYNC or PAGEMAP_SCAN, or it was asked for)")")
        }
        guest.resume()
        loop.execute { [self] in
            do throws(AgentError) {
                try tracker?.attach(to: loop)
                listener = try TCPListener(loop: loop, address: configuration.listen, limits: .handshake,
                                           maxFrame: sessionLimits.largestFrame) { [unowned self] in accepted($0) }
                configuration.onListening(listener!.address)
            } catch {
                setupError = error
                guest.pause {}
                busyPoll.close()
                loop.shutdown()
            }
        }
        loop.run()
        if let setupError { throw setupError }  // set on the loop, read after it ended
        report = reportWithCounts()
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
        loop.assertOnLoop()
        connection.onFrame = { [unowned self, unowned connection] frame in
            handshake(connection, frame)
        }
        connection.startReading()
    }

    private func handshake(_ connection: TCPConnection, _ frame: ParsedFrame) {
        let hello: Hello
        do {
            guard case .hello(let h) = try Message.decode(frame) else {
                return connection.fail(.protocolViolation, "expected a hello frame first, got \(frame.header.kind)")
            }
            hello = h
        } catch {
            return connection.fail(.protocolViolation, error.description)
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
            startSession(urgent: connection)
        case .bulk:
            guard let urgent, !urgent.isClosed, hello.sessionID == sessionID, bulk == nil else {
                connection.fail(.unknownSession, "no migration session \(hex(hello.sessionID)) waits for a bulk connection")
                return
            }
            startBulk(connection)
        }
    }

    private func startSession(urgent connection: TCPConnection) {
        startNanos = EventLoop.nowNanos()
        sessionID = UInt128(UInt64.random(in: 1...UInt64.max)) << 64 | UInt128(UInt64.random(in: 0...UInt64.max))
        urgent = connection
        connection.configureForDemand()
        connection.limits = sessionLimits
        watchdog = LoopTimer(loop: loop, everyMillis: Tuning.sourceWatchdogMillis) { [unowned self] in checkDestinationReads() }
        connection.onFrame = { [unowned self] in urgentFrame($0) }
        connection.onClose = { [unowned self] in peerClosed("urgent", $0) }
        connection.send(.welcome(Welcome(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount), sessionID: sessionID)))
        connection.flush()
        configuration.progress("source: destination connected")
        if precopy != nil { phase = .precopy }
    }

    private func startBulk(_ connection: TCPConnection) {
        bulk = connection
        connection.limits = sessionLimits
        connection.onFrame = { [unowned connection] frame in
            connection.fail(.protocolViolation, "unexpected \(frame.header.kind) frame on the bulk connection")
        }
        connection.onClose = { [unowned self] in peerClosed("bulk", $0) }
        connection.onWritable = { [unowned self] in pump() }
        pumpAgain = NextTurn(loop: loop) { [unowned self] in pump() }
        if let precopy, phase == .precopy {
            stream = precopy.startRound(pages: nil)
            pump()
        } else {
            switchover(pending: [])
        }
    }

    // MARK: Pre-copy

    /// A round is fully handed to the socket: look at what the guest dirtied meanwhile.
    private func endRound() {
        guard let precopy, let stream else { return }
        let round: (dirty: [Int], converged: Bool)
        do { round = try precopy.endRound(pagesSent: stream.pagesSent) } catch { return abort(error.description) }
        configuration.progress("source: pre-copy round \(precopy.rounds.count): sent \(stream.pagesSent) pages, guest dirtied \(round.dirty.count)")
        if round.converged {
            switchover(pending: round.dirty)
        } else {
            self.stream = precopy.startRound(pages: round.dirty)
            pumpAgain?.schedule()
        }
    }

    // MARK: Switch-over

    /// Pauses the guest, sends the stale set (pages dirtied since last sent) and
    /// the guest's state, and turns to post-copy. Both go on the bulk
    /// connection, behind every pre-copy page, so the destination applies them
    /// only after it has every page they refer to.
    private func switchover(pending: [Int]) {
        loop.assertOnLoop()
        let pauseStart = EventLoop.nowNanos()
        guest.pause { tracker?.serviceFaults() }
        let stale: PageSet
        do { stale = try precopy?.finalStaleSet(pending: pending) ?? PageSet(pageCount: arena.pageCount) } catch {
            return abort(error.description)
        }
        tracker = nil
        let staleSet = stale.sorted
        guard let bulk else { return }
        for start in stride(from: 0, to: staleSet.count, by: Tuning.staleIndicesPerFrame) {
            bulk.send(.staleSet(staleSet[start..<min(start + Tuning.staleIndicesPerFrame, staleSet.count)].map { UInt64($0) }))
        }
        bulk.send(.switchover(arg: 0, state: guest.switchoverState()))
        bulk.flush()
        report.staleAtSwitchover = staleSet.count
        report.pauseToSwitchoverMillis = Double(EventLoop.nowNanos() - pauseStart) / 1e6
        configuration.progress("source: guest paused after writing \(guest.pagesWritten) pages; switched over with \(staleSet.count) stale pages")
        phase = .postcopy
        demand = DemandServer(loop: loop, arena: arena, sent: sentSinceSwitchover, stale: stale, busyPoll: busyPoll)
        // Stale pages first; without pre-copy every page is still absent there.
        let hadPrecopy = precopy != nil
        stream = PageStream(arena: arena, pages: hadPrecopy ? staleSet : nil, flags: hadPrecopy ? [.refresh] : [],
                            pagesPerFrame: configuration.pagesPerFrame, skip: sentSinceSwitchover)
        DigestTask.start(arena: arena, loop: loop) { [self] value in
            digest = value
            report.digest = hex(value.value)
            pump()
        }
        pump()
    }

    // MARK: Serving

    private func urgentFrame(_ frame: ParsedFrame) {
        guard let urgent else { return }
        switch frame.header.kind {
        case .request:
            // Before switch-over no page is owed: a request then is not from a real destination.
            guard let demand else {
                return urgent.fail(.protocolViolation, "a page request before switch-over")
            }
            demand.serve(frame, on: urgent)
        case .done:
            let message: Message
            do { message = try Message.decode(frame) } catch { return urgent.fail(.protocolViolation, error.description) }
            guard case .done(let received, let theirDigest) = message else { return }
            report.destinationDigestMatch = theirDigest == digest?.value
            configuration.progress("source: destination received \(received) pages; digest \(report.destinationDigestMatch ? "matches" : "DIFFERS")")
            if !report.destinationDigestMatch { failure = "the destination's digest differs from the source's" }
            finish()
        default:
            urgent.fail(.protocolViolation, "unexpected \(frame.header.kind) frame on the urgent connection")
        }
    }

    private func pump() {
        loop.assertOnLoop()
        guard let bulk, let stream, !endSent, phase != .finished else { return }
        let queuedAll = !configuration.background && phase == .postcopy
            || stream.pump(bulk, highWater: configuration.bulkHighWater)
        switch phase {
        case .precopy:
            if queuedAll && bulk.backlog == 0 {
                endRound()
            } else if bulk.backlog == 0 {
                pumpAgain?.schedule()  // no write pending means no completion will call us
            }
        case .postcopy:
            guard queuedAll else {
                if bulk.backlog == 0 { pumpAgain?.schedule() }
                return
            }
            report.backgroundPagesSent = stream.pagesSent
            guard let digest else { return }  // sent when the digest is ready
            bulk.send(.endOfStream(pagesSent: UInt64(stream.pagesSent), digest: digest.value))
            bulk.flush()
            endSent = true
            configuration.progress("source: background stream complete (\(stream.pagesSent) pages)")
        case .awaitingDestination, .finished:
            break
        }
    }

    /// A destination that stopped reading (frozen, or its host gone without a
    /// reset) would leave the stream waiting forever: give up after the peer timeout.
    private func checkDestinationReads() {
        guard let bulk, bulk.backlog > 0 else { return }
        let stalled = Double(EventLoop.nowNanos() - bulk.lastWriteNanos) / 1e9
        if stalled > configuration.peerTimeoutSeconds {
            abort("the destination has not read for \(configuration.peerTimeoutSeconds) s (peer timeout); "
                + "\(bulk.backlog) bytes still queued for it")
        }
    }

    // MARK: Ending

    private func peerClosed(_ which: String, _ reason: TCPConnection.CloseReason) {
        guard phase != .finished else { return }
        // The destination may close the bulk connection once it has everything,
        // before its "done" on the urgent one is read here.
        if which == "bulk", endSent, case .endOfStream = reason { return }
        let sent = (stream?.pagesSent ?? 0) + (demand?.counts.pagesSent ?? 0)
        abort("destination's \(which) connection ended before the migration finished (\(reason)); "
            + "\(sent) of \(arena.pageCount) pages had been sent since switch-over")
    }

    private func abort(_ reason: String) {
        failure = failure ?? reason
        finish()
    }

    private func finish() {
        loop.assertOnLoop()
        guard phase != .finished else { return }
        phase = .finished
        report.elapsedSeconds = Double(EventLoop.nowNanos() - startNanos) / 1e9
        tracker?.stop()
        guest.pause {}
        urgent?.close()
        bulk?.close()
        listener?.close()
        pumpAgain?.close()
        busyPoll.close()
        watchdog?.close()
        loop.shutdown()
    }

    /// The report with the counters of the parts that did the work.
    private func reportWithCounts() -> SourceReport {
        var report = self.report
        if let precopy { report.precopyRounds = precopy.rounds }
        if let demand {
            report.demandRequests = demand.counts.requests
            report.demandPagesSent = demand.counts.pagesSent
            report.unchangedAnswers = demand.counts.unchangedAnswers
        }
        return report
    }
}
