import CUffd
import Foundation
import Wire

/// The source agent: owns the guest's memory, accepts one destination,
/// optionally pre-copies while the guest still runs here (tracking what it
/// dirties), switches the guest over, then serves demand requests on the
/// urgent connection and streams the rest on the bulk one.
///
/// Threading: `run` drives a libuv loop on the calling thread; every other
/// method runs on that loop. The guest and the digest run on threads of their
/// own and reach the loop through `EventLoop.execute`.
public final class SourceAgent: @unchecked Sendable {
    private enum Phase { case awaitingDestination, precopy, postcopy, finished }

    private let configuration: SourceConfiguration
    private let loop: EventLoop
    private let arena: Arena
    private let guest: SourceGuest
    private var report: SourceReport
    private var phase = Phase.awaitingDestination
    private var listener: TCPListener?
    private var urgent: TCPConnection?
    private var bulk: TCPConnection?
    private var sessionID: UInt128 = 0
    /// The current stream: a pre-copy round, then the post-copy background stream.
    private var stream: PageStream?
    /// Continues the stream on the next turn when the socket took everything at once.
    private var pumpAgain: NextTurn?
    private var tracker: (any DirtyTracking)?
    private var busyPoll: BusyPoll?
    private var watchdog: LoopTimer?
    private var round = 0
    private var roundStartNanos: UInt64 = 0
    /// Pages sent since switch-over (on demand or in the background): the stream skips them.
    private let sentSinceSwitchover: UnsafeMutablePointer<Bool>
    /// Pages stale at the destination after switch-over.
    private let stale: UnsafeMutablePointer<Bool>
    private var digest: ArenaDigest?
    private var endSent = false
    private var startNanos: UInt64 = 0
    private var failure: String?
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
        sentSinceSwitchover = .allocate(capacity: arena.pageCount)
        sentSinceSwitchover.initialize(repeating: false, count: arena.pageCount)
        stale = .allocate(capacity: arena.pageCount)
        stale.initialize(repeating: false, count: arena.pageCount)
    }

    deinit {
        sentSinceSwitchover.deallocate()
        stale.deallocate()
    }

    /// Fills the guest, listens, and runs until the migration ends. Throws when it failed.
    public func run() throws(AgentError) -> SourceReport {
        configuration.progress("source: filling \(ByteSize(bytes: arena.size)) of guest memory (\(arena.pageCount) pages)")
        guest.fill()
        if configuration.precopyRounds > 0 {
            let probe: KernelProbe
            do { probe = try KernelProbe.run() } catch { throw .unsupported(error.description) }
            let method = try DirtyTrackingMethod.select(configuration.dirtyTracking, probe: probe)
            // Armed before the guest writes again, so that no write escapes the first round.
            tracker = try method.makeTracker(arena: arena)
            report.dirtyTracking = method.rawValue
            configuration.progress("source: pre-copy dirty tracking: \(method == .pagemapScan ? "userfaultfd WP_ASYNC + PAGEMAP_SCAN" : "synchronous userfaultfd write-protect faults (the kernel lacks WP_ASYNC or PAGEMAP_SCAN, or it was asked for)")")
        }
        guest.startDirtying(pagesPerSecond: configuration.dirtyRate)
        loop.execute { [self] in
            do {
                try tracker?.attach(to: loop)
                listener = try TCPListener(loop: loop, address: configuration.listen, limits: .handshake,
                                           maxFrame: 64 * 1024) { [unowned self] in accepted($0) }
                configuration.onListening(listener!.address)
            } catch {
                setupError = error as? AgentError ?? .system("\(error)")
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
            startSession(urgent: connection)
        case .bulk:
            guard let urgent, !urgent.isClosed, hello.sessionID == sessionID, bulk == nil else {
                connection.fail(.unknownSession, "no migration session \(hex(hello.sessionID)) waits for a bulk connection")
                return
            }
            startBulk(connection)
        }
    }

    private var limits: FrameLimits {
        FrameLimits(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount),
                    maxPagesPerFrame: max(256, configuration.pagesPerFrame),
                    maxControlPayload: 64 * 1024, maxGuestState: arena.pageCount * 4)
    }

    private func startSession(urgent connection: TCPConnection) {
        startNanos = EventLoop.nowNanos()
        sessionID = UInt128(UInt64.random(in: 1...UInt64.max)) << 64 | UInt128(UInt64.random(in: 0...UInt64.max))
        urgent = connection
        connection.configureForDemand()
        connection.limits = limits
        busyPoll = BusyPoll(loop: loop, windowMicros: configuration.busyPollMicros)
        watchdog = LoopTimer(loop: loop, everyMillis: 250) { [unowned self] in checkDestinationReads() }
        connection.onFrame = { [unowned self] in urgentFrame($0) }
        connection.onClose = { [unowned self] in peerClosed("urgent", $0) }
        connection.send(.welcome(Welcome(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount), sessionID: sessionID)))
        connection.flush()
        configuration.progress("source: destination connected")
        if tracker != nil { phase = .precopy }
    }

    private func startBulk(_ connection: TCPConnection) {
        bulk = connection
        connection.limits = limits
        connection.onFrame = { [unowned connection] frame in
            connection.fail(.protocolViolation, "unexpected \(frame.header.kind) frame on the bulk connection")
        }
        connection.onClose = { [unowned self] in peerClosed("bulk", $0) }
        connection.onWritable = { [unowned self] in pump() }
        pumpAgain = NextTurn(loop: loop) { [unowned self] in pump() }
        if phase == .precopy {
            startRound(pages: nil)
            pump()
        } else {
            switchover(pending: [])
        }
    }

    // MARK: Pre-copy

    private func startRound(pages: [Int]?) {
        round += 1
        roundStartNanos = EventLoop.nowNanos()
        stream = PageStream(arena: arena, pages: pages, pagesPerFrame: configuration.pagesPerFrame)
    }

    /// A round is fully handed to the socket: look at what the guest dirtied meanwhile.
    private func endRound() {
        guard let tracker, let stream else { return }
        let dirty: [Int]
        do { dirty = try tracker.collect() } catch { return abort(error.description) }
        report.precopyRounds.append(PrecopyRound(
            round: round, pagesSent: stream.pagesSent, pagesDirtied: dirty.count,
            seconds: Double(EventLoop.nowNanos() - roundStartNanos) / 1e9))
        configuration.progress("source: pre-copy round \(round): sent \(stream.pagesSent) pages, guest dirtied \(dirty.count)")
        let converge = configuration.convergePages ?? max(1, arena.pageCount / 64)
        if round >= configuration.precopyRounds || dirty.count <= converge {
            switchover(pending: dirty)
        } else {
            startRound(pages: dirty)
            pumpAgain?.schedule()
        }
    }

    // MARK: Switch-over

    /// Pauses the guest, sends the stale set (pages dirtied since last sent) and
    /// the guest's state, and turns to post-copy. Both go on the bulk
    /// connection, behind every pre-copy page, so the destination applies them
    /// only after it has every page they refer to.
    private func switchover(pending: [Int]) {
        let pauseStart = EventLoop.nowNanos()
        guest.pause { tracker?.serviceFaults() }
        var staleSet: [Int] = []
        if let tracker {
            let final: [Int]
            do { final = try tracker.collect() } catch { return abort(error.description) }
            tracker.stop()
            self.tracker = nil
            for page in pending { stale[page] = true }
            for page in final { stale[page] = true }
            staleSet = (0..<arena.pageCount).filter { stale[$0] }
        }
        guard let bulk else { return }
        let perFrame = 64 * 1024 / 8
        for start in stride(from: 0, to: staleSet.count, by: perFrame) {
            bulk.send(.staleSet(staleSet[start..<min(start + perFrame, staleSet.count)].map { UInt64($0) }))
        }
        bulk.send(.switchover(arg: 0, state: guest.versions.encoded()))
        bulk.flush()
        report.staleAtSwitchover = staleSet.count
        report.pauseToSwitchoverMillis = Double(EventLoop.nowNanos() - pauseStart) / 1e6
        configuration.progress("source: guest paused after writing \(guest.pagesWritten) pages; switched over with \(staleSet.count) stale pages")
        phase = .postcopy
        // Stale pages first; without pre-copy every page is still absent there.
        stream = PageStream(arena: arena, pages: report.precopyRounds.isEmpty ? nil : staleSet,
                            flags: report.precopyRounds.isEmpty ? [] : [.refresh],
                            pagesPerFrame: configuration.pagesPerFrame, skip: sentSinceSwitchover)
        computeDigest()
        pump()
    }

    // MARK: Serving

    private func urgentFrame(_ frame: ParsedFrame) {
        guard let urgent else { return }
        switch frame.header.kind {
        case .request:
            serve(frame, on: urgent)
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

    /// Answers a demand request: the page, or "unchanged" when the hash of the
    /// destination's stale copy still matches ours.
    private func serve(_ frame: ParsedFrame, on urgent: TCPConnection) {
        let first = Int(frame.header.arg)
        let count = Int(frame.header.count)
        let hashes = RequestFlags(rawValue: frame.header.flags).contains(.hasHash) ? frame.payload : nil
        report.demandRequests += 1
        busyPoll?.extend(from: EventLoop.nowNanos())
        for page in first..<(first + count) {
            sentSinceSwitchover[page] = true
            let bytes = UnsafeRawBufferPointer(start: arena.ioPage(page), count: arena.pageSize)
            if let hashes, hashes.loadUnaligned(fromByteOffset: (page - first) * 16, as: UInt128.self) == PageHash.hash(bytes).littleEndian {
                urgent.send(kind: .unchanged, count: 1, arg: UInt64(page))
                report.unchangedAnswers += 1
            } else {
                let flags: PageFlags = stale[page] ? [.demand, .refresh] : [.demand]
                urgent.send(kind: .pages, flags: flags.rawValue, count: 1, arg: UInt64(page), payload: bytes)
                report.demandPagesSent += 1
            }
        }
    }

    private func pump() {
        guard let bulk, let stream, !endSent else { return }
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

    /// Digests the frozen arena on a thread of its own and hands the result to the loop.
    private func computeDigest() {
        let arena = self.arena
        let loop = self.loop
        let agent = self
        Thread.detachNewThread {
            // Lowest priority: it runs while demand faults are served, and on a busy
            // machine it must not take the CPU from the loop that serves them.
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(cuffd_gettid()), 19)
            let value = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size), pageSize: arena.pageSize)
            loop.execute {
                agent.digest = value
                agent.report.digest = hex(value.value)
                agent.pump()
            }
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
        let sent = (stream?.pagesSent ?? 0) + report.demandPagesSent
        abort("destination's \(which) connection ended before the migration finished (\(reason)); "
            + "\(sent) of \(arena.pageCount) pages had been sent since switch-over")
    }

    private func abort(_ reason: String) {
        failure = failure ?? reason
        finish()
    }

    private func finish() {
        guard phase != .finished else { return }
        phase = .finished
        report.elapsedSeconds = Double(EventLoop.nowNanos() - startNanos) / 1e9
        tracker?.stop()
        guest.pause()
        urgent?.close()
        bulk?.close()
        listener?.close()
        pumpAgain?.close()
        busyPoll?.close()
        watchdog?.close()
        loop.shutdown()
    }
}
