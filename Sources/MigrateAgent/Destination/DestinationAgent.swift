import Dispatch
import FoundationEssentials
import Glibc
import Histogram
import Wire

/// The destination agent: the guest runs here while its memory arrives. This
/// type keeps the phases (connect, pre-copy, switch-over, post-copy, end) and
/// wires the parts that do the work, each of one concern:
///
/// - `FaultService` reads faults and sends requests on the urgent connection;
/// - `PageInstaller` puts arriving pages in place and records their hashes;
/// - `Switchover` maps pre-copied pages and protects the stale ones;
/// - `BackgroundInstaller` installs background runs on a thread of its own;
/// - `BackgroundFlow` slows the bulk stream while demand is outstanding;
/// - `ReceivedHashes` gives the digest compared with the source's at the end.
///
/// `docs/life-of-a-fault.md` follows one demand fault through them.
///
/// Threading: `run` drives the loop on the calling thread; every other method
/// runs on it (asserted in debug builds). Guest threads only touch memory; a
/// failure releases them by unregistering the arena, so none stays blocked.
public final class DestinationAgent: @unchecked Sendable {
    private enum Phase {
        case connecting, awaitingWelcome, precopy, migrating
        /// Post-copy with the connections lost: faults are still read and
        /// recorded; the guest waits while a new connection resumes the session.
        case reconnecting
        /// Every page is here and `done` went out: waiting for the source to
        /// acknowledge it (resumed like post-copy if the connection drops).
        case confirming
        case finished
    }

    private let configuration: DestinationConfiguration
    private let loop: EventLoop
    private let memory: DestinationMemory
    /// Shorthands for `memory.space` and `memory.resolver`.
    private var space: any GuestPageSpace { memory.space }
    private var resolver: any PageResolver { memory.resolver }
    private let tracker: PageTracker
    private let phases: FaultPhaseClock
    private let hashes: ReceivedHashes
    private let flow: BackgroundFlow
    private let busyPoll: BusyPoll
    private let faults: FaultService
    private let installer: PageInstaller
    /// Our own arena: installs background pages off the loop (nil: on the loop).
    private let background: BackgroundInstaller?
    private let hotSet = HotSetWatch()
    /// The session's frame limits, fixed by the arena's geometry.
    private let sessionLimits: FrameLimits
    // Loop thread only, like everything below.
    private var report: DestinationReport
    private var phase = Phase.connecting
    private var urgent: TCPConnection?
    private var bulk: TCPConnection?
    /// Each connection's key proof; the source's frames count only once it proved the key.
    private var urgentAuth: ConnectionAuth?
    private var bulkAuth: ConnectionAuth?
    private var poller: FdPoller?
    /// Maps pre-copied pages into the guest view after switch-over, while the guest runs.
    private var mapper: HeldPageMapper?
    /// Handler mode: watches the VMM's socket, whose end means the VMM is gone.
    private var vmmWatch: FdPoller?
    private var timer: LoopTimer?
    private var guest: (any DestinationWorkload)?
    private var sessionID: UInt128 = 0
    private var sourceDigest: UInt128?
    /// The digest of the arena as received, once every page is here (a pass over every page: computed once).
    private var receivedDigest: UInt128?
    private var startNanos: UInt64 = 0
    private var startCPU = ProcessCPU(userSeconds: 0, systemSeconds: 0)
    private var lastProgressNanos: UInt64 = 0
    private var lastMetricsNanos: UInt64 = 0
    /// From a lost connection until the resumed session's bulk connection said what
    /// it holds: the reconnect timeout runs from `droppedNanos`.
    private var recovering = false
    /// The VMM exited while runs were still with the installer: how, until they are collected.
    private var vmmExitAwaitingInstaller: String?
    private var droppedNanos: UInt64 = 0
    private var dropReason = ""
    /// The reconnect attempt in flight (0: none), and when the next may start.
    private var attemptStartedNanos: UInt64 = 0
    private var nextAttemptNanos: UInt64 = 0
    private var backoffNanos: UInt64 = 0

    /// Every demand fault's latency as the guest threads measured it, in
    /// nanoseconds (after `run`), for distributions and merging across runs.
    public private(set) var faultLatencyHistogram = LatencySummary.makeCompactHistogram()

    /// The report so far (also after a failure).
    public var currentReport: DestinationReport { reportWithCounts() }

    public init(configuration: DestinationConfiguration) throws(AgentError) {
        self.configuration = configuration
        loop = try EventLoop()
        if let socket = configuration.vmmSocket {
            memory = try DestinationMemory.vmm(configuration, socketPath: socket)
        } else {
            memory = try DestinationMemory.ownArena(configuration)
        }
        let space = memory.space
        tracker = PageTracker(pageCount: space.pageCount)
        phases = FaultPhaseClock()
        hashes = ReceivedHashes(pageCount: space.pageCount, pageSize: space.pageSize, arena: memory.arena)
        // --no-yield-to-demand is the stream-first balance: no throttle beyond the requests either.
        flow = BackgroundFlow(loop: loop, throttlesDuringDemand: configuration.throttleBackgroundDuringDemand,
                              holdsAfterDemand: configuration.yieldToDemand)
        busyPoll = BusyPoll(loop: loop, windowMicros: configuration.busyPollMicros)
        faults = FaultService(loop: loop, resolver: memory.resolver, tracker: tracker, hashes: hashes, phases: phases,
                              flow: flow, busyPoll: busyPoll, progress: configuration.progress)
        // A VMM's memory has removal events: its installs pass a gate the loop closes to read
        // them. Huge pages stay on the loop (a slot holds 64 KiB).
        background = configuration.installThread != .never && space.pageSize <= Tuning.installerSlotBytes
            ? BackgroundInstaller(resolver: memory.resolver, hashes: hashes, yieldsToDemand: configuration.yieldToDemand,
                                  gated: memory.vmm != nil ? (InstallGate(), tracker) : nil) : nil
        faults.background = background
        installer = PageInstaller(resolver: memory.resolver, ioArena: memory.arena, tracker: tracker, hashes: hashes, phases: phases, flow: flow,
                                  faults: faults, busyPoll: busyPoll, background: background,
                                  installThread: configuration.installThread, loop: loop)
        sessionLimits = .session(pageSize: space.pageSize, pageCount: UInt64(space.pageCount))
        report = DestinationReport(backend: memory.kind, arenaBytes: memory.bytes, pageSize: space.pageSize)
        report.preallocateMillis = memory.preallocateMillis
        report.authentication = ConnectionAuth.describe(key: configuration.key, encrypt: configuration.encrypt)
        report.vmmPID = memory.vmm?.pid
        report.vmmRegions = memory.vmm?.regionCount
    }

    /// Connects, migrates and runs the guest. Returns the report; throws when the migration failed.
    public func run() throws(AgentError) -> DestinationReport {
        configuration.progress("destination: backend \(memory.kind.rawValue), arena \(ByteSize(bytes: memory.bytes)); connecting to \(configuration.source)")
        startNanos = EventLoop.nowNanos()
        startCPU = ProcessCPU.current()
        loop.execute { [self] in
            timer = LoopTimer(loop: loop, everyMillis: Tuning.destinationTickMillis) { [unowned self] in tick() }
            connectUrgent()
        }
        loop.run()
        report = reportWithCounts()
        finishGuest()
        if let error = report.error { throw .migrationFailed(error) }
        return report
    }

    // MARK: Handshake

    private func connectUrgent() {
        loop.assertOnLoop()
        urgent = TCPConnection.connect(loop: loop, to: configuration.source, name: "urgent", limits: .handshake) { [unowned self] connection, error in
            if let error { return connectFailed("cannot connect to the source at \(configuration.source): \(error)") }
            connection.configureForDemand()
            let auth = ConnectionAuth(key: configuration.key, role: .destination, encrypt: configuration.encrypt)
            urgentAuth = auth
            connection.onFrame = { [unowned self] frame in
                handle { () throws(AgentError) in
                    if try authenticate(frame, auth, connection, channel: .urgent) { return }
                    try urgentFrame(frame)
                }
            }
            connection.onClose = { [unowned self] in connectionClosed("urgent", $0) }
            startHandshake(connection, auth, channel: .urgent)
            if phase == .connecting { phase = .awaitingWelcome }
        }
    }

    private func urgentFrame(_ frame: ParsedFrame) throws(AgentError) {
        switch (phase, frame.header.kind) {
        // Demand answers may still be on their way when the background stream completed the
        // arena (`confirming`): they arrive as duplicates.
        case (.migrating, .pages), (.confirming, .pages):
            try installer.install(frame, demand: true, receivedAt: urgent!.lastReceiveNanos)
            pagesArrived()
        case (.migrating, .unchanged), (.confirming, .unchanged):
            try installer.unchanged(first: Int(frame.header.arg), count: Int(frame.header.count),
                                    receivedAt: urgent!.lastReceiveNanos)
            pagesArrived()
        case (.awaitingWelcome, .welcome):
            guard case .welcome(let welcome) = try Message.decode(frame) else { return }
            guard welcome.pageSize == space.pageSize, welcome.pageCount == UInt64(space.pageCount) else {
                throw .peer("arena size mismatch: source has \(welcome.pageCount) pages of \(welcome.pageSize) bytes, "
                    + "destination has \(space.pageCount) pages of \(space.pageSize) bytes")
            }
            sessionID = welcome.sessionID
            urgent!.limits = sessionLimits
            faults.urgent = urgent
            phase = .precopy
            connectBulk()
        case (.confirming, .done):
            confirmed()
        case (.reconnecting, .welcome):
            guard case .welcome(let welcome) = try Message.decode(frame), welcome.sessionID == sessionID else {
                throw .peer("the source answered the resume with another session")
            }
            resumed()
        default:
            throw .protocolViolation("unexpected \(frame.header.kind) frame on the urgent connection")
        }
    }

    /// Our hello, and on a resumed bulk connection the `have` frames behind it:
    /// a resumed urgent hello names the session; a resumed bulk hello says how
    /// many `have` frames follow (its `resumeCount`).
    private func sendHello(_ channel: Channel, on connection: TCPConnection) {
        let haves = recovering && channel == .bulk ? haveMessages() : []
        let resumeCount = channel == .bulk ? UInt64(haves.count) : UInt64(recovering ? report.resumes + 1 : 0)
        connection.send(.hello(Hello(channel: channel, pageSize: space.pageSize, pageCount: UInt64(space.pageCount),
                                     sessionID: recovering || channel == .bulk ? sessionID : 0, resumeCount: resumeCount)))
        for have in haves { connection.send(have) }
        if !haves.isEmpty { resumeComplete() }
    }

    /// The first frames on a new connection: our nonce (hello follows our proof),
    /// or hello at once when no key is used.
    private func startHandshake(_ connection: TCPConnection, _ auth: ConnectionAuth, channel: Channel) {
        if auth.isProven { sendHello(channel, on: connection) } else { auth.start(on: connection) }
        connection.flush()
        connection.startReading()
    }

    /// Hands frames to the key proof until the source proved the key; true when
    /// the frame was consumed. Our hello goes right behind our proof.
    private func authenticate(_ frame: ParsedFrame, _ auth: ConnectionAuth, _ connection: TCPConnection,
                              channel: Channel) throws(AgentError) -> Bool {
        guard !auth.isProven else { return false }
        if try auth.receive(try Message.decode(frame), on: connection) == .pending {
            sendHello(channel, on: connection)
        }
        return true
    }

    /// The bulk connection: pre-copy rounds, then the background stream.
    private func connectBulk() {
        bulk = TCPConnection.connect(loop: loop, to: configuration.source, name: "bulk", limits: sessionLimits) { [unowned self] connection, error in
            if let error { return connectFailed("cannot open the bulk connection to \(configuration.source): \(error)") }
            let auth = ConnectionAuth(key: configuration.key, role: .destination, encrypt: configuration.encrypt)
            bulkAuth = auth
            connection.onFrame = { [unowned self] frame in
                handle { () throws(AgentError) in
                    if try authenticate(frame, auth, connection, channel: .bulk) { return }
                    try bulkFrame(frame)
                }
            }
            connection.onClose = { [unowned self] in connectionClosed("bulk", $0) }
            startHandshake(connection, auth, channel: .bulk)
            flow.bulk = connection
        }
    }

    private func bulkFrame(_ frame: ParsedFrame) throws(AgentError) {
        switch (phase, frame.header.kind) {
        case (.precopy, .pages):
            try installer.precopy(frame)
        case (.precopy, .zeroPages):
            try installer.precopyZero(first: Int(frame.header.arg), count: Int(frame.header.count))
        case (.precopy, .staleSet):
            guard case .staleSet(let pages) = try Message.decode(frame) else { return }
            Switchover.markStale(pages, tracker: tracker)
        case (.precopy, .hotSet):
            guard case .hotSet(let pages) = try Message.decode(frame) else { return }
            hotSet.announce(pages)
        case (.precopy, .switchover):
            try switchover(frame)
        case (.migrating, .pages):
            try installer.install(frame, demand: false, receivedAt: bulk!.lastReceiveNanos)
            installer.reportRoom(to: flow)
            pagesArrived()
        case (.migrating, .zeroPages):
            try installer.installZero(first: Int(frame.header.arg), count: Int(frame.header.count),
                                      receivedAt: bulk!.lastReceiveNanos)
            pagesArrived()
        case (.migrating, .endOfStream):
            guard case .endOfStream(_, let digest) = try Message.decode(frame) else { return }
            sourceDigest = digest
            completeIfDone()
        default:
            throw .protocolViolation("unexpected \(frame.header.kind) frame on the bulk connection")
        }
    }

    // MARK: Switch-over

    /// The guest's state arrived: map what pre-copy delivered, protect the stale
    /// pages, start taking faults, start the guest.
    private func switchover(_ frame: ParsedFrame) throws(AgentError) {
        let applyStart = EventLoop.nowNanos()
        if let backend = memory.backend {
            let held = try Switchover.apply(tracker: tracker, backend: backend, hashes: hashes)
            report.pagesProtectedAtSwitchover = tracker.staleCount
            mapper = HeldPageMapper(loop: loop, backend: backend, runs: held) { [unowned self] in fail($0) }
            if backend.keepsStaleCopy, tracker.staleCount > 0 {
                var stale: [Int] = []
                try tracker.forEachRun(where: { $0 == .stale }) { first, count in stale += first..<(first + count) }
                hashes.held = HeldCopyHashes(loop: loop, pages: stale) { [unowned hashes] in hashes.hashOfHeldCopy($0) }
            }
        }
        poller = try FdPoller(loop: loop, fd: resolver.uffd.fd) { [unowned self] in
            handle { () throws(AgentError) in try faults.drain() }
        }
        phase = .migrating
        background?.start(loop: loop) { [unowned self] in backgroundInstalled() }
        hotSet.switchedOver(at: applyStart)
        faults.serving = true
        if let vmm = memory.vmm {
            vmmWatch = try FdPoller(loop: loop, fd: vmm.connection) { [unowned self] in vmmSocketReadable(vmm) }
        }
        if let arena = memory.arena, let guest = configuration.workload() {
            let tracker = self.tracker
            try guest.start(state: frame.payload, context: DestinationGuestContext(
                arena: arena, wasDemandFetched: { tracker.wasDemandFetched($0) }, touchLog: phases.makeTouchLog(threads: guest.threadCount)))
            self.guest = guest
        }
        report.switchoverApplyMillis = Double(EventLoop.nowNanos() - applyStart) / 1e6
        // After the guest's and the installer's threads started: a new thread inherits the slice.
        if let micros = configuration.loopSliceMicros, let refused = LoopSlice.request(micros: micros) {
            configuration.progress("destination: warning: \(refused)")
        }
        mapper?.start()  // after the guest started: mapping is no longer downtime
        hashes.held?.start()  // likewise: a refresh request then finds its held copy's hash ready
        configuration.progress("destination: switched over; \(guest.map { "running \($0)" } ?? "no guest runs here")")
    }

    // MARK: Progress, liveness, ending

    private func tick() {
        loop.assertOnLoop()
        let now = EventLoop.nowNanos()
        if let vmm = memory.vmm, phase != .finished, !report.vmmExited, !vmm.isAlive {
            vmmGone(vmm, how: "it exited")  // again each tick while the installer still holds runs
            guard phase != .finished else { return }
        }
        if recovering {
            if Double(now - droppedNanos) / 1e9 > configuration.reconnectTimeoutSeconds {
                return fail("could not resume the session within \(configuration.reconnectTimeoutSeconds) s "
                    + "(reconnect timeout) after: \(dropReason)")
            }
            if phase == .reconnecting { return reconnectTick(now: now) }
        }
        let lastHeard = max(startNanos, urgent?.lastFrameNanos ?? 0, bulk?.lastFrameNanos ?? 0)
        if phase != .finished, Double(now - lastHeard) / 1e9 > configuration.peerTimeoutSeconds {
            return lost("no data from the source for \(configuration.peerTimeoutSeconds) s (peer timeout)")
        }
        if configuration.metricsFile != nil, now - lastMetricsNanos > 1_000_000_000 {
            lastMetricsNanos = now
            writeMetrics()
        }
        if phase == .migrating, now - lastProgressNanos > 1_000_000_000 {
            lastProgressNanos = now
            configuration.progress("destination: \(tracker.presentCount)/\(space.pageCount) pages "
                + "(\(100 * tracker.presentCount / space.pageCount)%), \(installer.counts.demand) on demand")
        }
    }

    /// The background installer finished runs: their pages are present, and it has room again.
    private func backgroundInstalled() {
        guard phase != .finished else { return }
        handle { () throws(AgentError) in try installer.collectBackground() }
        if let how = vmmExitAwaitingInstaller, let vmm = memory.vmm {
            vmmGone(vmm, how: how)  // decides now if every run is back, else waits on
            guard phase != .finished else { return }
        }
        installer.reportRoom(to: flow)
        pagesArrived()
    }

    /// After pages were installed: the hot set's residency, then the end.
    private func pagesArrived() {
        hotSet.advance(tracker, now: EventLoop.nowNanos())
        completeIfDone()
    }

    /// Every page is here and the source's digest arrived: compare, tell the
    /// source, and wait for it to acknowledge (it keeps the session until then).
    private func completeIfDone() {
        // Slots still with the installer may hold pages a removal already counted as done:
        // their hashes join the digest only when they are collected.
        guard phase == .migrating, tracker.isComplete, (background?.inFlight ?? 0) == 0, let sourceDigest else { return }
        let digest = hashes.digest()
        receivedDigest = digest
        report.digestMatch = digest == sourceDigest
        report.sourceDigest = hex(sourceDigest)
        report.destinationDigest = hex(digest)
        report.elapsedSeconds = Double(EventLoop.nowNanos() - startNanos) / 1e9
        report.cpuDuringMigration = ProcessCPU.current().since(startCPU)
        report.guestCPUSecondsDuringMigration = guest?.cpuSeconds()
        if !report.digestMatch {
            report.error = "digest mismatch: source \(hex(sourceDigest)), destination \(hex(digest))"
        }
        configuration.progress("destination: all \(space.pageCount) pages present in \(String(format: "%.2f", report.elapsedSeconds)) s; digest \(report.digestMatch ? "matches" : "DIFFERS")")
        phase = .confirming
        sendDone()
    }

    /// Sends `done` with the digest `completeIfDone` computed (also again after a resume).
    private func sendDone() {
        let counts = installer.counts
        urgent?.send(.done(pagesReceived: UInt64(counts.demand + counts.background), digest: receivedDigest ?? hashes.digest()))
        urgent?.flush()
    }

    /// The source acknowledged `done`: the migration is over on both sides.
    private func confirmed() {
        report.sourceConfirmed = true
        report.memory = ProcessMemory.current()  // every page present, nothing torn down yet
        teardown()
    }

    /// Runs a frame or fault handler; an error it throws ends the migration.
    private func handle(_ body: () throws(AgentError) -> Void) {
        do { try body() } catch { fail(error) }
    }

    private func connectionClosed(_ which: String, _ reason: TCPConnection.CloseReason) {
        guard phase != .finished else { return }
        // Once every page is here the bulk connection has nothing left to carry:
        // the source closes it when it acknowledges `done` on the urgent one.
        if phase == .confirming, which == "bulk" { return }
        lost("the source's \(which) connection ended: \(reason)")
    }

    private func connectFailed(_ reason: String) {
        if phase == .reconnecting { return abandonAttempt(reason) }
        lost(reason)
    }

    // MARK: Resume after a lost connection

    /// A connection dropped or went silent. After switch-over the guest runs
    /// here and its missing pages are only at the source: keep it blocked on
    /// them and reconnect (`--reconnect-timeout`). Before, fail: the guest still
    /// runs on the source and nothing is lost.
    private func lost(_ reason: String) {
        guard configuration.reconnectTimeoutSeconds > 0, [.migrating, .reconnecting, .confirming].contains(phase) else {
            return fail(reason)
        }
        if phase == .reconnecting { return abandonAttempt(reason) }
        if !recovering {
            recovering = true
            droppedNanos = EventLoop.nowNanos()
            backoffNanos = 0
        }
        dropReason = reason
        phase = .reconnecting
        dropConnections()
        nextAttemptNanos = EventLoop.nowNanos() + backoffNanos
        configuration.progress("destination: lost the source (\(reason)); \(tracker.missingCount) pages still missing; "
            + "reconnecting for up to \(configuration.reconnectTimeoutSeconds) s")
    }

    /// Closes the current connections without ending the migration; requests
    /// queued meanwhile stay recorded in the tracker and are sent again.
    private func dropConnections() {
        for connection in [urgent, bulk].compactMap({ $0 }) {
            connection.onClose = { _ in }
            connection.close()
        }
        urgent = nil
        bulk = nil
        flow.bulk = nil
        faults.urgent = nil
        attemptStartedNanos = 0
    }

    /// The attempt in flight failed: close it and try again after a backoff.
    private func abandonAttempt(_ reason: String) {
        dropReason = reason
        dropConnections()
        backoffNanos = min(max(backoffNanos * 2, Tuning.reconnectBackoffNanos.lowerBound), Tuning.reconnectBackoffNanos.upperBound)
        nextAttemptNanos = EventLoop.nowNanos() + backoffNanos
    }

    private func reconnectTick(now: UInt64) {
        if attemptStartedNanos == 0 {
            guard now >= nextAttemptNanos else { return }
            attemptStartedNanos = now
            connectUrgent()
        } else if Double(now - attemptStartedNanos) / 1e9 > min(configuration.peerTimeoutSeconds, Tuning.reconnectAttemptSeconds) {
            abandonAttempt("a reconnect attempt got no answer (\(dropReason))")
        }
    }

    /// The source welcomed us back into the session: ask again for every page
    /// still waited on, then open the bulk connection, which says what we hold.
    private func resumed() {
        urgent!.limits = sessionLimits
        faults.urgent = urgent
        attemptStartedNanos = 0
        if sourceDigest != nil, tracker.isComplete {  // only the acknowledgement of `done` was missing
            phase = .confirming
            resumeComplete()
            return sendDone()
        }
        phase = .migrating
        let resent = faults.requestAgain()
        configuration.progress("destination: the source welcomed us back; asked again for \(resent) pages")
        connectBulk()
    }

    /// The pages held here, as `have` frames of at most the session's control payload.
    private func haveMessages() -> [Message] {
        let perFrame = FrameLimits.sessionControlPayload * 8
        return stride(from: 0, to: space.pageCount, by: perFrame).map { first in
            let count = min(perFrame, space.pageCount - first)
            var bits = [UInt8](repeating: 0, count: (count + 7) / 8)
            for i in 0..<count where tracker.state(first + i) == .present { bits[i / 8] |= 1 << (i % 8) }
            return .have(first: UInt64(first), bits: bits, count: count)
        }
    }

    private func resumeComplete() {
        recovering = false
        backoffNanos = 0
        report.resumes += 1
        configuration.progress("destination: resumed the session (resume \(report.resumes)) after \(String(format: "%.2f", Double(EventLoop.nowNanos() - droppedNanos) / 1e9)) s")
    }

    private func fail(_ error: AgentError) {
        if case .protocolViolation(let message) = error { urgent?.fail(.protocolViolation, message) }
        // The VMM's mm is gone (ESRCH) or its regions unmapped (ENOENT): it exited.
        if case .kernel(let e) = error, [ESRCH, ENOENT].contains(e.errno.rawValue), let vmm = memory.vmm {
            if report.vmmExited { return }  // it left with every page in place: nothing more goes into it
            return vmmGone(vmm, how: error.description)
        }
        fail(error.description)
    }

    // MARK: Handler mode: the VMM

    /// The VMM never sends after its handover: readable means it closed (exited).
    private func vmmSocketReadable(_ vmm: VMMPeer) {
        var byte: UInt8 = 0
        let n = recv(vmm.connection, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        guard n <= 0, !(n < 0 && errno == EAGAIN) else { return }
        vmmWatch?.close()
        vmmWatch = nil
        // Firecracker before 1.12 closes the socket right after the handover: only a
        // process that is gone counts (the tick checks it from now on).
        if !vmm.isAlive { vmmGone(vmm, how: "it exited") }
    }

    /// No live VM is owed pages any more: end, saying so, without failing.
    private func vmmGone(_ vmm: VMMPeer, how: String) {
        guard phase != .finished, !report.vmmExited else { return }
        // The installer may have put the last pages in place (the VMM read them and
        // left) before the loop took its runs back: decide once every run is back.
        // An install that fails now only says the VMM is gone.
        _ = try? installer.collectBackground()
        if (background?.inFlight ?? 0) > 0 {
            vmmExitAwaitingInstaller = how
            return
        }
        vmmExitAwaitingInstaller = nil
        report.vmmExited = true
        if tracker.isComplete {
            // Every page was in place: finish with the source (digest, done) as usual.
            configuration.progress("destination: the VMM (pid \(vmm.pid)) exited after its memory was complete")
            return completeIfDone()
        }
        report.warning = "the VMM (pid \(vmm.pid)) exited before its memory was complete (\(how)); "
            + "\(tracker.missingCount) pages were never needed"
        configuration.progress("destination: \(report.warning!)")
        // The source would otherwise wait out its reconnect timeout for a resume that never comes.
        urgent?.fail(.cancelled, report.warning!)
        teardown(succeeded: true)
    }

    /// Ends the migration as failed: the guest is told to stop and released.
    private func fail(_ reason: String) {
        loop.assertOnLoop()
        guard phase != .finished else { return }
        if report.sourceDigest != nil, tracker.isComplete {
            // Every page is here and checked: the guest is whole. Only the source's
            // acknowledgement is missing; say so, but the migration succeeded here.
            report.warning = "the source did not acknowledge the end of the migration: \(reason)"
            configuration.progress("destination: warning: \(report.warning!)")
            return teardown()
        }
        report.error = "\(reason); \(tracker.missingCount) of \(space.pageCount) pages still missing"
        report.pagesMissing = tracker.missingCount
        report.pagesMappedAfterSwitchover = mapper?.pagesMapped ?? 0
        if keepStaleCopies() { return teardown(succeeded: false) }
        guest?.abort()
        if let vmm = memory.vmm, configuration.killVMMOnFailure, vmm.isAlive {
            // Its missing pages will never come: a VMM left waiting on them hangs forever.
            kill(vmm.pid, SIGKILL)
            report.vmmKilled = true
            configuration.progress("destination: killed the VMM (pid \(vmm.pid)): its memory cannot be completed")
        }
        teardown(succeeded: false)
    }

    /// `--keep-stale-on-failure`: when only stale pages are missing, one
    /// `UFFDIO_SET_MODE` lets every blocked and later access proceed on the stale
    /// copies, and the guest runs on. True when that was done.
    private func keepStaleCopies() -> Bool {
        guard configuration.keepStaleOnFailure, [.migrating, .reconnecting].contains(phase) else { return false }
        let stale = tracker.staleCount
        guard stale > 0, stale == tracker.missingCount else {
            configuration.progress("destination: --keep-stale-on-failure not used: \(tracker.missingCount - stale) pages "
                + "never arrived at all, and a guest cannot run on pages it does not have")
            return false
        }
        guard let rwp = memory.backend as? RWPBackend else {
            configuration.progress("destination: --keep-stale-on-failure needs the rwp backend; \(memory.kind.rawValue) cannot release stale pages in place")
            return false
        }
        do { try rwp.releaseAllAsync() } catch {
            configuration.progress("destination: --keep-stale-on-failure failed: \(error)")
            return false
        }
        report.staleKeptPages = stale
        report.error! += "; the guest runs on with \(stale) stale pages (--keep-stale-on-failure)"
        configuration.progress("destination: gave up on the source; released \(stale) stale pages with RWP_ASYNC: "
            + "the guest runs on their pre-copy contents")
        return true
    }

    private func teardown(succeeded: Bool = true) {
        phase = .finished
        faults.serving = false
        // Success: the guest needs us no more. Failure: unregister our own arena so a
        // blocked guest thread retries and goes on (a VMM's regions are left as they are).
        if succeeded && tracker.isComplete { resolver.finish() } else { resolver.release() }
        // After the release: an install in flight then fails at once.
        if background?.stop() == false {
            report.warning = report.warning ?? "the page-installer thread did not end within 5 s of the end; it was left behind"
        }
        vmmWatch?.close()
        mapper?.close()
        hashes.held?.close()
        poller?.close()
        resolver.uffd.close()  // after the poller stopped watching it: releases any fault the unregister missed
        timer?.close()
        busyPoll.close()
        // The urgent connection may carry the reason (an error frame) or `done`: the bulk one
        // closes only after it, so that the source reads why before it sees a connection end.
        if let urgent, !urgent.isClosed {
            let bulk = self.bulk
            urgent.onClose = { _ in bulk?.close() }
            urgent.closeWhenFlushed()
        } else {
            bulk?.close()
        }
        loop.shutdown()
    }

    /// Rewrites the metrics file; a failure is a warning (the migration goes on).
    private func writeMetrics() {
        guard let path = configuration.metricsFile else { return }
        do { try MetricsFile(path: path).write(reportWithCounts(), log2Micros: phases.log2Micros) } catch {
            report.warning = report.warning ?? error.description
        }
    }

    /// The report with the counters of the parts that did the work.
    private func reportWithCounts() -> DestinationReport {
        var report = self.report
        let f = faults.counts
        report.faultMessages = f.messages
        report.missingFaults = f.missing
        report.staleFaults = f.stale
        report.sharedFaults = f.shared
        report.lateFaults = f.late
        report.heldPagesMapped = f.heldPagesMapped
        report.disagreements = f.disagreements
        let i = installer.counts
        report.demandPages = i.demand
        report.backgroundPages = i.background
        report.backgroundPagesOnInstallerThread = i.onInstallerThread
        report.duplicatePages = i.duplicates
        report.eexistRaces = i.eexistRaces
        report.refreshedPages = i.refreshed
        report.unchangedPages = i.unchanged
        report.precopyPages = i.precopy
        report.unrequestedPages = i.unrequested
        report.pagesDiscardedAsRemoved = i.discardedRemoved
        report.deferredInstalls = i.deferred
        report.zeroPagesReceived = i.zero
        report.removedRanges = f.removedRanges
        report.removedPages = f.removedPages
        report.zeroPages = f.zeroFilled
        report.pagesMissing = tracker.missingCount
        report.hotSetPages = hotSet.count
        report.hotSetResidentMillis = hotSet.residentAfterMillis
        report.hotSetResidentWithPages = hotSet.residentWithPages
        if hotSet.count > 0, phase == .finished { report.hotSetDemandFaults = hotSet.demandFetched(tracker) }
        return report
    }

    /// After the loop: waits for the guest and adds its outcome to the report.
    private func finishGuest() {
        report.phases = phases.summary
        report.demandLatencyLog2Micros = phases.log2Micros
        writeMetrics()
        if let guest {
            let outcome = guest.finish(within: configuration.guestDeadlineSeconds)
            if outcome.finished {
                phases.collectWakeUps()
                report.phases = phases.summary
                report.faultLatencyMicros = LatencySummary(outcome.faultLatency)
                faultLatencyHistogram = outcome.faultLatency
            }
            report.guest = outcome.summary
            report.arenaVerified = outcome.arenaVerified
            if report.error == nil { report.error = outcome.error }
        }
        report.succeeded = report.error == nil
    }
}
