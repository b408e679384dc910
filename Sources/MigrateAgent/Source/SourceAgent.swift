import Dispatch
import FoundationEssentials
import Glibc
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
    private enum Phase {
        case awaitingDestination, precopy, postcopy
        /// Post-copy with the destination's connections gone: the session and the
        /// guest's memory are kept for `reconnectTimeoutSeconds` while it resumes.
        case awaitingResume
        case finished
    }

    private let configuration: SourceConfiguration
    private let loop: EventLoop
    private let arena: Arena
    private let guest: any SourceWorkload
    private let sessionLimits: FrameLimits
    /// Pages per background frame: the configured number, at most what the session allows.
    private var pagesPerFrame: Int { min(configuration.pagesPerFrame, sessionLimits.maxPagesPerFrame) }
    private let busyPoll: BusyPoll
    /// Pages sent since switch-over, on demand or in the background.
    private let sentSinceSwitchover: PageSet
    /// An image's access traces: recorded, and prefetched (its order for the background stream); nil: none.
    private let traces: SourceTraces?
    // Loop thread only, like everything below.
    private var report: SourceReport
    private var phase = Phase.awaitingDestination
    private var listener: TCPListener?
    /// Accepted connections still proving the key and saying hello.
    private var pending: PendingConnections?
    private var urgent: TCPConnection?
    private var bulk: TCPConnection?
    private var demand: DemandServer?
    private var sessionID: UInt128 = 0
    /// The current stream: a pre-copy round, then the post-copy background stream.
    private var stream: PageStream? {
        willSet { zeroPagesOfEndedStreams += stream?.zeroPagesSent ?? 0 }
    }
    /// All-zero pages the streams before the current one sent as `zeroPages` frames.
    private var zeroPagesOfEndedStreams = 0
    /// Continues the stream on the next turn when the socket took everything at once.
    private var pumpAgain: NextTurn?
    private var tracker: (any DirtyTracking)?
    /// Pre-copy's dirty tracking being stopped after switch-over.
    private var retiredTracker: TrackerRetirement?
    private var precopy: PrecopyRounds?
    private var watchdog: LoopTimer?
    /// Paces the bulk stream below `--max-bandwidth`, demand first (nil: no limit).
    private lazy var pacer: BulkPacer? = configuration.maxBandwidth.map(BulkPacer.init)
    /// Expires connections that are too slow to prove the key.
    private var handshakeTimer: LoopTimer?
    /// When the end of the stream was handed to the socket: `done` is due within the peer timeout.
    private var endSentNanos: UInt64 = 0
    private var digest: ArenaDigest?
    private var endSent = false
    private var sessionStartNanos: UInt64 = 0
    /// The bulk connection ended while the urgent one was open: detached at the next watchdog tick.
    private var bulkEnded: String?
    /// When the destination's connections were lost (phase `awaitingResume`).
    private var detachedNanos: UInt64 = 0
    /// `have` frames a resumed bulk connection still owes before the stream restarts.
    private var haveFramesDue = 0
    /// Resumed bulk connections whose `have` frames have not all arrived.
    private var resumingBulk: TCPConnection?
    private var startNanos: UInt64 = 0
    private var startCPU: ProcessCPU?
    /// Pages the background stream sends first (the warm-up's hot-first order), and the
    /// hot set announced to the destination.
    private var streamHead: [Int] = []
    private var hotSet: [Int] = []
    private var failure: String?
    private var setupError: AgentError?
    /// `kernelProbe()`'s result.
    private var probe: KernelProbe?

    /// The report so far (also after a failure).
    public var currentReport: SourceReport { reportWithCounts() }

    public init(configuration: SourceConfiguration) throws(AgentError) {
        guard (1...FrameLimits.sessionPagesPerFrame).contains(configuration.pagesPerFrame) else {
            throw .invalidArgument("pages per frame must be 1...\(FrameLimits.sessionPagesPerFrame), "
                + "not \(configuration.pagesPerFrame)")
        }
        self.configuration = configuration
        loop = try EventLoop()
        if let image = configuration.memoryFile {
            // An image does not change while it is served: nothing to pre-copy or track.
            guard configuration.precopyRounds == 0 else {
                throw .invalidArgument("a memory file is served by pure post-copy; pre-copy rounds need a running guest")
            }
            arena = try Arena(imageAt: image, pageSize: configuration.pageSize)
        } else {
            _ = try ByteSize(bytes: configuration.arenaSize).pages(of: configuration.pageSize)
            arena = try Arena(size: configuration.arenaSize, pageSize: configuration.pageSize, name: "source-arena")
        }
        guest = configuration.workload(arena)
        sessionLimits = .session(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount))
        busyPoll = BusyPoll(loop: loop, windowMicros: configuration.busyPollMicros)
        sentSinceSwitchover = PageSet(pageCount: arena.pageCount)
        report = SourceReport(arenaBytes: arena.size, pageSize: configuration.pageSize)
        traces = try SourceTraces.make(configuration, arena: arena)  // before anything listens
        streamHead = traces?.prefetchHead ?? []
    }

    /// Fills the guest, listens, and runs until the migration ends. Throws when it failed.
    public func run() throws(AgentError) -> SourceReport {
        if let image = arena.imagePath {
            configuration.progress("source: serving \(ByteSize(bytes: arena.size)) of guest memory (\(arena.pageCount) pages) from \(image)")
        } else {
            configuration.progress("source: filling \(ByteSize(bytes: arena.size)) of guest memory (\(arena.pageCount) pages)")
        }
        guest.populate()
        // The guest filled its view; the stream and the digest read the io view: map it
        // before listening rather than fault 16 pages at a time while migrating.
        if arena.imagePath == nil, let refused = arena.mapIOView() {
            configuration.progress("source: warning: \(refused)")
        }
        let warmingUp = configuration.trackSeconds > 0
        if warmingUp {
            // The guest runs from now on; pre-copy's dirty tracking is armed after the
            // warm-up (the two cannot share the guest view), before the first round reads a page.
            guest.resume()
            do { try warmUp() } catch {
                guest.pause {}  // nothing will migrate: the guest's threads stop with the agent
                throw error
            }
        }
        if configuration.precopyRounds > 0 {
            let method = try DirtyTrackingMethod.select(configuration.dirtyTracking, probe: try kernelProbe())
            // Armed before the first round reads a page (and, without a warm-up, before the
            // guest writes), so that no write escapes the first round.
            let tracker = try method.makeTracker(arena: arena)
            self.tracker = tracker
            precopy = PrecopyRounds(loop: loop, arena: arena, tracker: tracker, maxRounds: configuration.precopyRounds,
                                    convergePages: configuration.convergePages, pagesPerFrame: pagesPerFrame)
            report.dirtyTracking = method.rawValue
            configuration.progress("source: pre-copy dirty tracking: \(method == .pagemapScan ? "userfaultfd WP_ASYNC + PAGEMAP_SCAN" : "synchronous userfaultfd write-protect faults (the kernel lacks WP_ASYNC or PAGEMAP_SCAN, or it was asked for)")")
        }
        if !warmingUp { guest.resume() }
        loop.execute { [self] in
            do throws(AgentError) {
                try tracker?.attach(to: loop)
                let pending = PendingConnections(loop: loop, capacity: Tuning.maxPendingConnections,
                                                 deadlineSeconds: configuration.handshakeTimeoutSeconds)
                self.pending = pending
                handshakeTimer = LoopTimer(loop: loop, everyMillis: Tuning.sourceWatchdogMillis) { [unowned self] in
                    if let pending = self.pending, pending.expire(now: EventLoop.nowNanos()) > 0 {
                        configuration.progress("source: closed a connection that did not finish its handshake in time")
                    }
                }
                listener = try TCPListener(loop: loop, address: configuration.listen, limits: .handshake) { [unowned self] in accepted($0) }
                configuration.onListening(listener!.address)
            } catch {
                setupError = error
                finish()  // closes whatever was set up, so the loop ends
            }
        }
        if let micros = configuration.loopSliceMicros, let refused = LoopSlice.request(micros: micros) {
            configuration.progress("source: warning: \(refused)")
        }
        loop.run()
        if let retiredTracker, !retiredTracker.wait(seconds: 30) {
            configuration.progress("source: warning: stopping the dirty tracker took longer than 30 s")
        }
        if let setupError { throw setupError }  // set on the loop, read after it ended
        report = reportWithCounts()
        report.guestPagesWritten = guest.pagesWritten
        traces?.writeRecorded(switchedOver: demand != nil, failed: failure != nil, digest: digest, report: &report,
                              progress: configuration.progress)
        if let failure {
            report.error = failure
            throw .migrationFailed(failure)
        }
        report.succeeded = true
        return report
    }

    /// What the kernel offers, probed once for the warm-up and pre-copy alike (before the loop runs).
    private func kernelProbe() throws(AgentError) -> KernelProbe {
        if let probe { return probe }
        do { probe = try KernelProbe.run() } catch { throw .kernel(error) }
        return probe!
    }

    /// `--track-seconds`: learns the guest's working set before any destination can connect.
    private func warmUp() throws(AgentError) {
        guard arena.imagePath == nil else {
            throw .invalidArgument("a memory file has no running guest whose accesses could be tracked; drop --track-seconds")
        }
        var method: AccessTrackingMethod?
        if !configuration.trackingOff {
            method = try AccessTrackingMethod.select(requested: configuration.accessTracking, probe: try kernelProbe())
            if method == .minorSampling {
                configuration.progress("source: the kernel has no userfaultfd RWP: tracking accesses by sampling "
                    + "MINOR faults on \(configuration.trackSamplePercent)% of the pages per interval (each costs the guest a fault)")
            }
        }
        let outcome = try WorkingSetWarmUp.run(
            arena: arena, guest: guest,
            settings: .init(seconds: configuration.trackSeconds, intervalMillis: configuration.trackIntervalMillis,
                            method: method, samplePercent: configuration.trackSamplePercent),
            progress: configuration.progress)
        report.workingSet = outcome.report
        // The hot set is announced either way, so the destination can say how the
        // order did; only hot-first sends it first.
        hotSet = outcome.hotSet
        if configuration.hotFirst { streamHead = outcome.order }
    }

    // MARK: Handshake

    private func accepted(_ connection: TCPConnection) {
        loop.assertOnLoop()
        guard phase != .finished, let entry = pending?.admit(connection, key: configuration.key, encrypt: configuration.encrypt) else { return }
        connection.onFrame = { [unowned self, unowned entry] frame in handshake(entry, frame) }
        connection.onClose = { [unowned self, unowned connection] _ in pending?.remove(connection) }
        connection.startReading()
    }

    /// Every frame of a connection that has not joined the session: the key
    /// proof first, then hello. Nothing about the guest, not even its size, goes
    /// to a peer that has not proven the key.
    private func handshake(_ entry: PendingConnections.Entry, _ frame: ParsedFrame) {
        let connection = entry.connection
        let message: Message
        do { message = try Message.decode(frame) } catch {
            pending?.remove(connection)
            return connection.fail(.protocolViolation, error.description)
        }
        if !entry.auth.isProven || message.kind == .authNonce {
            do {
                // A proof completes the exchange; hello comes in a frame of its own.
                if try entry.auth.receive(message, on: connection) == .pending || message.kind == .authProof { return }
            } catch {
                configuration.progress("source: refused a connection: \(error)")
                pending?.refuse(connection, .authenticationFailed, error.description)
                return
            }
        }
        guard case .hello(let hello) = message else {
            pending?.remove(connection)
            return connection.fail(.protocolViolation, "expected a hello frame, got \(frame.header.kind)")
        }
        pending?.remove(connection)
        switch hello.channel {
        case .urgent where hello.sessionID != 0:
            guard hello.sessionID == sessionID, phase == .postcopy || phase == .awaitingResume else {
                connection.fail(.unknownSession, "no migration session \(hex(hello.sessionID)) can be resumed here")
                return
            }
            resumeUrgent(connection)
        case .urgent:
            guard sessionID == 0 else {
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
            guard let urgent, !urgent.isClosed, hello.sessionID == sessionID, hello.resumeCount > 0 || bulk == nil else {
                connection.fail(.unknownSession, "no migration session \(hex(hello.sessionID)) waits for a bulk connection")
                return
            }
            if hello.resumeCount > 0 {
                resumeBulk(connection, haveFrames: Int(hello.resumeCount))
            } else {
                startBulk(connection)
            }
        }
    }

    private func startSession(urgent connection: TCPConnection) {
        startNanos = EventLoop.nowNanos()
        startCPU = ProcessCPU.current()
        sessionID = UInt128(UInt64.random(in: 1...UInt64.max)) << 64 | UInt128(UInt64.random(in: 0...UInt64.max))
        urgent = connection
        connection.configureForDemand()
        connection.limits = sessionLimits
        watchdog = LoopTimer(loop: loop, everyMillis: Tuning.sourceWatchdogMillis) { [unowned self] in checkDestinationReads() }
        connection.onFrame = { [unowned self] in urgentFrame($0) }
        connection.onClose = { [unowned self] in peerClosed("urgent", $0) }
        sessionStartNanos = EventLoop.nowNanos()
        connection.send(.welcome(Welcome(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount), sessionID: sessionID)))
        connection.flush()
        configuration.progress("source: destination connected")
        if precopy != nil { phase = .precopy }
    }

    private func startBulk(_ connection: TCPConnection) {
        bulk = connection
        pace(connection)
        connection.limits = sessionLimits
        connection.onFrame = { [unowned connection] frame in
            connection.fail(.protocolViolation, "unexpected \(frame.header.kind) frame on the bulk connection")
        }
        connection.onClose = { [unowned self] in peerClosed("bulk", $0) }
        connection.onWritable = { [unowned self] in pump() }
        pumpAgain = NextTurn(loop: loop) { [unowned self] in pump() }
        if let precopy, phase == .precopy {
            // The first round copies every page: the hot ones first, if the warm-up found any.
            stream = precopy.startRound(pages: streamHead.isEmpty ? nil : StreamOrder.headFirst(streamHead, pageCount: arena.pageCount))
            pump()
        } else {
            switchover(pending: [])
        }
    }

    // MARK: Resume

    /// The destination lost its connections (or they went silent) after
    /// switch-over: keep the session and the memory, wait for it to come back.
    private func detach(_ reason: String) {
        guard configuration.reconnectTimeoutSeconds > 0, phase == .postcopy else { return abort(reason) }
        phase = .awaitingResume
        detachedNanos = EventLoop.nowNanos()
        dropConnections()
        configuration.progress("source: lost the destination (\(reason)); keeping the session for it to resume "
            + "within \(configuration.reconnectTimeoutSeconds) s")
    }

    /// Closes the destination's current connections without ending the session.
    private func dropConnections() {
        for connection in [urgent, bulk, resumingBulk].compactMap({ $0 }) {
            connection.onClose = { _ in }
            connection.close()
        }
        urgent = nil
        bulk = nil
        resumingBulk = nil
        bulkEnded = nil
    }

    /// An authenticated destination resumes its session: its new urgent
    /// connection replaces the old one (which may not even have failed here yet).
    private func resumeUrgent(_ connection: TCPConnection) {
        if phase == .postcopy {  // it noticed the drop before we did
            phase = .awaitingResume
            detachedNanos = EventLoop.nowNanos()
        }
        dropConnections()
        urgent = connection
        connection.configureForDemand()
        connection.limits = sessionLimits
        connection.onFrame = { [unowned self] in urgentFrame($0) }
        connection.onClose = { [unowned self] in peerClosed("urgent", $0) }
        connection.send(.welcome(Welcome(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount), sessionID: sessionID)))
        connection.flush()
        configuration.progress("source: destination is resuming the session")
    }

    /// While the post-copy stream runs: re-pace it to what demand leaves of `--max-bandwidth`, if one was given.
    private func startPacing() {
        pacer?.start(loop: loop, sent: { [unowned self] in UInt64((demand?.counts.pagesSent ?? 0) * arena.pageSize) }) {
            [unowned self] rate in _ = bulk?.limitSendRate(bytesPerSecond: rate)
        }
    }

    /// Holds the bulk stream to what demand leaves of `--max-bandwidth`, if one was given.
    private func pace(_ connection: TCPConnection) {
        guard let pacer, let refused = connection.limitSendRate(bytesPerSecond: pacer.bulkRate) else { return }
        configuration.progress("source: warning: the bulk stream is not paced to \(pacer.bulkRate) bytes/s: \(refused)")
    }

    /// The resumed bulk connection: it first says which pages the destination
    /// holds (`have`), then the stream restarts over every page it lacks.
    private func resumeBulk(_ connection: TCPConnection, haveFrames: Int) {
        resumingBulk?.close()
        resumingBulk = connection
        pace(connection)
        haveFramesDue = haveFrames
        sentSinceSwitchover.removeAll()
        connection.limits = sessionLimits
        connection.onFrame = { [unowned self, unowned connection] frame in have(frame, on: connection) }
        connection.onClose = { [unowned self] in peerClosed("bulk", $0) }
    }

    private func have(_ frame: ParsedFrame, on connection: TCPConnection) {
        guard frame.header.kind == .have, case .have(let first, let bits, let count)? = try? Message.decode(frame) else {
            return connection.fail(.protocolViolation, "expected a have frame on a resumed bulk connection, got \(frame.header.kind)")
        }
        for i in 0..<count where bits[i / 8] >> (i % 8) & 1 != 0 { sentSinceSwitchover.insert(Int(first) + i) }
        haveFramesDue -= 1
        guard haveFramesDue == 0 else { return }
        resumingBulk = nil
        bulk = connection
        phase = .postcopy
        report.resumes += 1  // counted when complete, as the destination counts it
        configuration.progress("source: destination resumed the session (resume \(report.resumes)); "
            + "it holds \(sentSinceSwitchover.count) pages")
        connection.onFrame = { [unowned connection] frame in
            connection.fail(.protocolViolation, "unexpected \(frame.header.kind) frame on the bulk connection")
        }
        connection.onWritable = { [unowned self] in pump() }
        endSent = false
        stream = PageStream(arena: arena, pages: nil, head: precopy == nil ? streamHead : [], pagesPerFrame: pagesPerFrame,
                            skip: sentSinceSwitchover)
        startPacing()  // the stream runs again (the pacer stopped if it had ended)
        pump()
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
        let staleSet = stale.sorted
        guard let bulk else { return }
        sendIndices(staleSet, on: bulk, as: Message.staleSet)
        // The hot pages the stream will bring, hottest first: the destination times their arrival.
        sendIndices(precopy == nil ? hotSet : hotSet.filter { stale.contains($0) }, on: bulk, as: Message.hotSet)
        bulk.send(.switchover(arg: 0, state: guest.switchoverState()))
        bulk.flush()
        report.staleAtSwitchover = staleSet.count
        report.pauseToSwitchoverMillis = Double(EventLoop.nowNanos() - pauseStart) / 1e6
        if let tracker { retiredTracker = TrackerRetirement(tracker) }  // after the guest's state went out
        tracker = nil
        configuration.progress("source: guest paused after writing \(guest.pagesWritten) pages; switched over with \(staleSet.count) stale pages")
        phase = .postcopy
        demand = DemandServer(loop: loop, arena: arena, sent: sentSinceSwitchover, stale: stale, busyPoll: busyPoll,
                              trace: traces?.recorder)
        startPacing()
        // Stale pages first; without pre-copy every page is still absent there (the warm-up's hot pages or a prefetch trace's first).
        let hadPrecopy = precopy != nil
        // After pre-copy only the stale pages remain: the hot ones first, if the warm-up found any.
        let staleOrder = streamHead.isEmpty ? staleSet : StreamOrder.headFirst(streamHead, pageCount: arena.pageCount).filter(stale.contains)
        // While the stream is written the loop is busy anyway: requests wake it from epoll (see busyPollDuringStream).
        busyPoll.isSuspended = configuration.background && !configuration.busyPollDuringStream
        stream = PageStream(arena: arena, pages: hadPrecopy ? staleOrder : nil, head: hadPrecopy ? [] : streamHead,
                            flags: hadPrecopy ? [.refresh] : [], pagesPerFrame: pagesPerFrame, skip: sentSinceSwitchover)
        DigestTask.start(arena: arena, loop: loop) { [self] value in
            digest = value
            report.digest = hex(value.value)
            pump()
        }
        pump()
    }

    /// Page indices in frames of at most `Tuning.indicesPerFrame` (`staleSet`, `hotSet`).
    private func sendIndices(_ pages: [Int], on connection: TCPConnection, as message: ([UInt64]) -> Message) {
        for start in stride(from: 0, to: pages.count, by: Tuning.indicesPerFrame) {
            connection.send(message(pages[start..<min(start + Tuning.indicesPerFrame, pages.count)].map { UInt64($0) }))
        }
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
            if configuration.followDemand { stream?.follow(to: Int(frame.header.arg + UInt64(frame.header.count))) }
        case .done:
            let message: Message
            do { message = try Message.decode(frame) } catch { return urgent.fail(.protocolViolation, error.description) }
            guard case .done(let received, let theirDigest) = message else { return }
            report.destinationDigestMatch = theirDigest == digest?.value
            configuration.progress("source: destination received \(received) pages; digest \(report.destinationDigestMatch ? "matches" : "DIFFERS")")
            if !report.destinationDigestMatch { failure = "the destination's digest differs from the source's" }
            // The acknowledgement: the destination keeps resuming until it reads it.
            urgent.send(.done(pagesReceived: received, digest: digest?.value ?? 0))
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
            pacer?.stop()
            busyPoll.isSuspended = false  // the demand left after the stream has the loop to itself
            endSentNanos = EventLoop.nowNanos()
            configuration.progress("source: background stream complete (\(stream.pagesSent) pages)")
        case .awaitingDestination, .awaitingResume, .finished:
            break
        }
    }

    /// Every wait on the destination ends by itself: one that never opens its
    /// bulk connection, stops reading (frozen, or its host gone without a reset),
    /// or never says `done` after the last page fails the migration after the
    /// peer timeout.
    private func checkDestinationReads() {
        let now = EventLoop.nowNanos()
        let timeout = configuration.peerTimeoutSeconds
        if let message = bulkEnded, phase == .postcopy || phase == .precopy {
            bulkEnded = nil
            return detach(message)
        }
        if phase == .awaitingResume {
            if Double(now - detachedNanos) / 1e9 > configuration.reconnectTimeoutSeconds {
                abort("the destination did not resume the session within \(configuration.reconnectTimeoutSeconds) s "
                    + "(reconnect timeout); the guest's memory is still here, unchanged")
            }
            return
        }
        guard let bulk else {
            if Double(now - sessionStartNanos) / 1e9 > timeout {
                abort("the destination did not open its bulk connection within \(timeout) s (peer timeout)")
            }
            return
        }
        if bulk.backlog > 0, Double(now - bulk.lastWriteNanos) / 1e9 > timeout {
            detach("the destination has not read for \(timeout) s (peer timeout); \(bulk.backlog) bytes still queued for it")
        } else if endSent, Double(now - max(endSentNanos, urgent?.lastFrameNanos ?? 0)) / 1e9 > timeout {
            detach("the destination did not confirm the migration (done) within \(timeout) s of the last page (peer timeout)")
        }
    }

    // MARK: Ending

    private func peerClosed(_ which: String, _ reason: TCPConnection.CloseReason) {
        guard phase != .finished, phase != .awaitingResume else { return }
        // The destination may close the bulk connection once it has everything,
        // before its "done" on the urgent one is read here.
        if which == "bulk", endSent, case .endOfStream = reason { return }
        let sent = (stream?.pagesSent ?? 0) + (demand?.counts.pagesSent ?? 0)
        let message = "destination's \(which) connection ended before the migration finished (\(reason)); "
            + "\(sent) of \(arena.pageCount) pages had been sent since switch-over"
        // A destination that gives up sends its reason on the urgent connection and then
        // closes both: give that reason until the next watchdog tick to arrive.
        if which == "bulk", case .endOfStream = reason, let urgent, !urgent.isClosed {
            bulkEnded = bulkEnded ?? message
            return
        }
        // A destination that ended the migration on purpose (its VMM left) will not come
        // back to resume. Other error frames close one connection (a damaged record): it may.
        if case .peerError(.cancelled, _) = reason { return abort(message) }
        detach(message)
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
        report.cpuDuringMigration = startCPU.map { ProcessCPU.current().since($0) }
        tracker?.stop()
        guest.pause {}
        urgent?.closeWhenFlushed()  // the acknowledgement of `done` goes out first
        bulk?.close()
        resumingBulk?.close()
        listener?.close()
        pending?.closeAll()
        handshakeTimer?.close()
        pumpAgain?.close()
        busyPoll.close()
        watchdog?.close()
        pacer?.stop()
        loop.shutdown()
    }

    /// The report with the counters of the parts that did the work.
    private func reportWithCounts() -> SourceReport {
        var report = self.report
        if let precopy { report.precopyRounds = precopy.rounds }
        report.refusedConnections = pending?.refused ?? 0
        report.streamHeadPages = streamHead.count
        report.zeroPagesSent = zeroPagesOfEndedStreams + (stream?.zeroPagesSent ?? 0)
        if phase == .postcopy || phase == .finished { report.streamHeadPagesSent = stream?.headPagesSent ?? 0 }
        report.authentication = ConnectionAuth.describe(key: configuration.key, encrypt: configuration.encrypt)

        if let demand {
            report.demandRequests = demand.counts.requests
            report.demandPagesSent = demand.counts.pagesSent
            report.unchangedAnswers = demand.counts.unchangedAnswers
        }
        traces?.fill(&report)
        return report
    }
}
