import CUffd
import Foundation
import Histogram
import Wire

/// The destination agent: the guest runs here while its memory arrives. One
/// libuv loop owns the userfaultfd, the page tracker and both connections; a
/// fault on an absent page sends one request on the urgent connection, and the
/// arriving page resolves it with `UFFDIO_COPY`. Background pages are
/// installed as they arrive. With pre-copy, pages arrive through the io view
/// before switch-over; those the source then reports stale are protected, and a
/// fault on one asks for fresh bytes (or "unchanged") and unprotects.
///
/// Threading: `run` drives the loop on the calling thread; every other method
/// runs on it. Guest threads only touch memory; a failure releases them by
/// unregistering the arena, so none is left blocked on a fault.
public final class DestinationAgent: @unchecked Sendable {
    private enum Phase { case connecting, awaitingWelcome, precopy, migrating, finished }

    private let configuration: DestinationConfiguration
    private let loop: EventLoop
    private let arena: Arena
    private let backend: any ProtectionBackend
    private let tracker: PageTracker
    private let phases: FaultPhaseClock
    private let receivedHashes: UnsafeMutablePointer<UInt128>
    private let messages: UnsafeMutablePointer<uffd_msg>
    private static let messageBatch = 64
    /// Pages of a background frame installed between two looks at the userfaultfd.
    private static let backgroundSlice = 16
    private var report: DestinationReport
    private var phase = Phase.connecting
    private var urgent: TCPConnection?
    private var bulk: TCPConnection?
    private var poller: FdPoller?
    private var timer: LoopTimer?
    private var guest: DestinationGuest?
    private var sessionID: UInt128 = 0
    private var sourceDigest: UInt128?
    private var startNanos: UInt64 = 0
    private var lastProgressNanos: UInt64 = 0
    private var busyPoll: BusyPoll?
    /// Demand requests sent and not yet answered. While any is, the bulk
    /// connection is not read: on two cores, decoding and installing background
    /// pages is what a demand fault would otherwise wait behind.
    private var outstandingDemand = 0 {
        didSet {
            guard configuration.holdBackgroundDuringFaults else { return }
            if outstandingDemand > 0 && oldValue == 0 { bulk?.holdReading() }
            if outstandingDemand == 0 && oldValue > 0 { bulk?.resumeReading() }
        }
    }

    /// Every demand fault's latency as the guest threads measured it, in
    /// nanoseconds (after `run`), for distributions and merging across runs.
    public private(set) var faultLatencyHistogram = LatencySummary.makeHistogram()

    /// The report so far (also after a failure).
    public var currentReport: DestinationReport { report }

    public init(configuration: DestinationConfiguration) throws(AgentError) {
        self.configuration = configuration
        let probe: KernelProbe
        do { probe = try KernelProbe.run() } catch { throw .unsupported(error.description) }
        let kind = try probe.select(configuration.protection)
        _ = try ByteSize(bytes: configuration.arenaSize).pages(of: configuration.pageSize)
        loop = try EventLoop()
        arena = try Arena(size: configuration.arenaSize, pageSize: configuration.pageSize, name: "destination-arena")
        backend = try makeBackend(kind, arena: arena)
        tracker = PageTracker(pageCount: arena.pageCount)
        phases = FaultPhaseClock(pageCount: arena.pageCount)
        receivedHashes = .allocate(capacity: arena.pageCount)
        receivedHashes.initialize(repeating: 0, count: arena.pageCount)
        messages = .allocate(capacity: Self.messageBatch)
        report = DestinationReport(backend: kind, arenaBytes: arena.size, pageSize: arena.pageSize)
    }

    deinit {
        receivedHashes.deallocate()
        messages.deallocate()
    }

    /// Connects, migrates and runs the guest. Returns the report; throws when the migration failed.
    public func run() throws(AgentError) -> DestinationReport {
        configuration.progress("destination: backend \(backend.kind.rawValue), arena \(ByteSize(bytes: arena.size)); connecting to \(configuration.source)")
        startNanos = EventLoop.nowNanos()
        loop.execute { [self] in connectUrgent() }
        loop.run()
        finishGuest()
        if let error = report.error { throw .migrationFailed(error) }
        return report
    }

    private var handshakeLimits: FrameLimits { .handshake }

    private var migrationLimits: FrameLimits {
        FrameLimits(pageSize: arena.pageSize, pageCount: UInt64(arena.pageCount), maxPagesPerFrame: 256,
                    maxControlPayload: 64 * 1024, maxGuestState: arena.pageCount * 4)
    }

    /// The largest frame either connection may carry once the arena is known.
    private var maxFrame: Int {
        WireConstants.headerSize + max(256 * arena.pageSize, arena.pageCount * 4, 64 * 1024)
    }

    // MARK: Handshake

    private func connectUrgent() {
        timer = LoopTimer(loop: loop, everyMillis: 50) { [unowned self] in tick() }
        busyPoll = BusyPoll(loop: loop, windowMicros: configuration.busyPollMicros)
        urgent = TCPConnection.connect(loop: loop, to: configuration.source, name: "urgent", limits: handshakeLimits,
                                       maxFrame: maxFrame) { [unowned self] connection, error in
            if let error {
                fail("cannot connect to the source at \(configuration.source): \(error)")
                return
            }
            connection.configureForDemand()
            connection.onFrame = { [unowned self] in urgentFrame($0) }
            connection.onClose = { [unowned self] in connectionClosed("urgent", $0) }
            connection.send(.hello(Hello(channel: .urgent, pageSize: arena.pageSize,
                                         pageCount: UInt64(arena.pageCount), sessionID: 0, resumeCount: 0)))
            connection.flush()
            connection.startReading()
            phase = .awaitingWelcome
        }
    }

    private func urgentFrame(_ frame: ParsedFrame) {
        switch (phase, frame.header.kind) {
        case (.migrating, .pages):
            install(frame, demand: true, receivedAt: urgent!.lastReceiveNanos)
        case (.awaitingWelcome, .welcome):
            guard case .welcome(let welcome)? = try? Message(frame) else { return protocolError("malformed welcome") }
            guard welcome.pageSize == arena.pageSize, welcome.pageCount == UInt64(arena.pageCount) else {
                return fail("arena size mismatch: source has \(welcome.pageCount) pages of \(welcome.pageSize) bytes, "
                    + "destination has \(arena.pageCount) pages of \(arena.pageSize) bytes")
            }
            sessionID = welcome.sessionID
            urgent!.limits = migrationLimits
            phase = .precopy
            connectBulk()
        case (.migrating, .unchanged):
            unchanged(first: Int(frame.header.arg), count: Int(frame.header.count))
        default:
            protocolError("unexpected \(frame.header.kind) frame on the urgent connection")
        }
    }

    /// The bulk connection: pre-copy rounds, then the background stream.
    private func connectBulk() {
        bulk = TCPConnection.connect(loop: loop, to: configuration.source, name: "bulk", limits: migrationLimits,
                                     maxFrame: maxFrame) { [unowned self] connection, error in
            if let error { return fail("cannot open the bulk connection to \(configuration.source): \(error)") }
            connection.readBudget = 256 * 1024
            connection.onFrame = { [unowned self] in bulkFrame($0) }
            connection.onClose = { [unowned self] in connectionClosed("bulk", $0) }
            connection.send(.hello(Hello(channel: .bulk, pageSize: arena.pageSize,
                                         pageCount: UInt64(arena.pageCount), sessionID: sessionID, resumeCount: 0)))
            connection.flush()
            connection.startReading()
        }
    }

    /// Pages the source dirtied after sending them: protected at switch-over.
    private func markStale(_ frame: ParsedFrame) {
        guard case .staleSet(let pages)? = try? Message(frame) else { return protocolError("malformed stale set") }
        for page in pages.map({ Int($0) }) where tracker.state(page) == .present {
            tracker.set(page, .stale)
        }
    }

    /// The guest's state arrived: map what pre-copy delivered, protect the stale
    /// pages, start taking faults, start the guest.
    private func switchover(_ frame: ParsedFrame) {
        let applyStart = EventLoop.nowNanos()
        guard let versions = GuestVersions(encoded: frame.payload, pageCount: arena.pageCount) else {
            return protocolError("guest state of \(frame.payload.count) bytes does not fit \(arena.pageCount) pages")
        }
        do {
            try forEachRun(where: { $0 != .absent }) { (first, count) throws(AgentError) in try backend.activate(first: first, count: count) }
            try forEachRun(where: { $0 == .stale }) { (first, count) throws(AgentError) in try backend.protect(first: first, count: count) }
            poller = try FdPoller(loop: loop, fd: backend.uffd.fd) { [unowned self] in drainFaults() }
        } catch {
            return fail("switch-over: \(error)")
        }
        report.pagesProtectedAtSwitchover = tracker.staleCount
        phase = .migrating
        let guest = DestinationGuest(arena: arena, versions: versions, tracker: tracker, touchLog: phases.touchLog,
                                     configuration: configuration.guest)
        self.guest = guest
        guest.start()
        report.switchoverApplyMillis = Double(EventLoop.nowNanos() - applyStart) / 1e6
        configuration.progress("destination: switched over; guest running with \(configuration.guest.threads) threads (\(configuration.guest.pattern.rawValue))")
    }

    /// Calls `body(first, count)` for each run of consecutive pages whose state matches.
    private func forEachRun(where matches: (PageState) -> Bool, _ body: (Int, Int) throws(AgentError) -> Void) throws(AgentError) {
        var page = 0
        while page < arena.pageCount {
            guard matches(tracker.state(page)) else { page += 1; continue }
            var end = page + 1
            while end < arena.pageCount && matches(tracker.state(end)) { end += 1 }
            try body(page, end - page)
            page = end
        }
    }

    private func bulkFrame(_ frame: ParsedFrame) {
        switch frame.header.kind {
        case .pages where phase == .precopy:
            precopy(frame)
        case .staleSet where phase == .precopy:
            markStale(frame)
        case .switchover where phase == .precopy:
            switchover(frame)
        case .pages:
            install(frame, demand: false, receivedAt: bulk!.lastReceiveNanos)
        case .endOfStream:
            guard case .endOfStream(_, let digest)? = try? Message(frame) else { return protocolError("malformed end of stream") }
            sourceDigest = digest
            completeIfDone()
        default:
            protocolError("unexpected \(frame.header.kind) frame on the bulk connection")
        }
    }

    // MARK: Faults (hot path: no locks, no allocation)

    private func drainFaults() {
        let uffd = backend.uffd
        var now: UInt64 = 0
        while phase == .migrating {
            let n: Int
            do { n = try uffd.readMessages(into: messages, capacity: Self.messageBatch) } catch {
                return fail(error.description)
            }
            if n == 0 { break }
            now = EventLoop.nowNanos()
            for i in 0..<n {
                let message = messages + i
                guard cuffd_msg_event(message) == CUFFD_EVENT_PAGEFAULT else { continue }
                report.faultMessages += 1
                guard let page = arena.pageIndex(ofGuestAddress: cuffd_msg_fault_address(message)) else { continue }
                fault(page, backend.classify(flags: cuffd_msg_fault_flags(message)), now: now)
            }
            if n < Self.messageBatch { break }
        }
        urgent?.flush()
        if now != 0 {
            let flushed = EventLoop.nowNanos()
            phases.flushed(at: flushed)
            busyPoll?.extend(from: flushed)
        }
    }

    private func fault(_ page: Int, _ kind: FaultKind, now: UInt64) {
        switch FaultAction.decide(state: tracker.state(page), kind: kind, keepsStaleCopy: backend.keepsStaleCopy) {
        case .requestAbsent:
            report.missingFaults += 1
            outstandingDemand += 1
            tracker.set(page, .requested)
            urgent?.send(kind: .request, count: 1, arg: UInt64(page))
            phases.requested(page, at: now)
        case .requestStale(let withHash):
            report.staleFaults += 1
            requestFresh(page, withHash: withHash, at: now)
        case .shareRequest:
            report.sharedFaults += 1
        case .wakeLate:
            report.lateFaults += 1
            try? backend.uffd.wake(arena.guestPage(page), length: arena.pageSize)
        case .mapHeld:
            report.heldPagesMapped += 1
            do { try backend.refresh(page: page, fresh: nil) } catch { fail(error.description) }
        case .disagreement:
            report.disagreements += 1
            configuration.progress("destination: error: a \(kind.rawValue) fault on page \(page) disagrees with "
                + "the tracker, which holds it as \(tracker.state(page)); fetching fresh bytes")
            requestFresh(page, withHash: false, at: now)
        }
    }

    /// Asks for a stale page's fresh bytes, with the hash of the copy held here
    /// so that the source can answer "unchanged" instead of sending the page.
    private func requestFresh(_ page: Int, withHash: Bool, at now: UInt64) {
        outstandingDemand += 1
        tracker.set(page, .staleRequested)
        if withHash {
            urgent?.send(kind: .request, flags: RequestFlags.hasHash.rawValue, count: 1, arg: UInt64(page),
                         payload: UnsafeRawBufferPointer(start: receivedHashes + page, count: 16))
        } else {
            urgent?.send(kind: .request, count: 1, arg: UInt64(page))
        }
        phases.requested(page, at: now)
    }

    /// Installs a run of pages from a frame whose payload is still in the receive
    /// buffer: absent pages with `UFFDIO_COPY` (a run at a time), stale pages by
    /// refresh and unprotect, pages already here are duplicates.
    private func install(_ frame: ParsedFrame, demand: Bool, receivedAt: UInt64) {
        let first = Int(frame.header.arg)
        let count = Int(frame.header.count)
        let pageSize = arena.pageSize
        let payload = frame.payload.baseAddress!
        var i = 0
        var installed = 0
        while i < count {
            let state = tracker.state(first + i)
            switch state {
            case .present:
                report.duplicatePages += 1
                i += 1
                continue
            case .stale, .staleRequested:
                do { try backend.refresh(page: first + i, fresh: payload + i * pageSize) } catch { return fail(error.description) }
                report.refreshedPages += 1
                pageArrived(first + i, demand: state == .staleRequested, bytes: payload + i * pageSize, receivedAt: receivedAt)
                installed += 1
                i += 1
                continue
            case .absent, .requested:
                break
            }
            var end = i
            var answered = 0
            // Background runs go in slices, checking for guest faults in between: a fault
            // arriving mid-frame would otherwise wait for every COPY of the frame (each up
            // to ~10 us on memory the host must back again).
            while end < count, demand || end - i < Self.backgroundSlice,
                  case let s = tracker.state(first + end), s == .absent || s == .requested {
                tracker.set(first + end, .present, demand: s == .requested)  // before the wake: the guest reads it
                if s == .requested { answered += 1 }
                end += 1
            }
            let outcome: InstallOutcome
            do {
                outcome = try backend.installAbsent(first: first + i, count: end - i, from: payload + i * pageSize)
            } catch {
                return fail(error.description)
            }
            report.eexistRaces += outcome.alreadyPresent
            outstandingDemand -= answered
            let resolvedAt = EventLoop.nowNanos()
            for k in i..<end {
                receivedHashes[first + k] = PageHash.hash(UnsafeRawBufferPointer(start: payload + k * pageSize, count: pageSize))
                if tracker.wasDemandFetched(first + k) { phases.resolved(first + k, received: receivedAt, resolved: resolvedAt) }
            }
            installed += end - i
            i = end
            if !demand && i < count {
                drainFaults()
                guard phase == .migrating else { return }
            }
        }
        if demand {
            report.demandPages += installed
            busyPoll?.extend(from: receivedAt)  // the woken guest thread is likely to fault again soon
        } else {
            report.backgroundPages += installed
        }
        completeIfDone()
    }

    /// Bookkeeping for one page resolved by refresh: state, hash, phases.
    private func pageArrived(_ page: Int, demand: Bool, bytes: UnsafeRawPointer?, receivedAt: UInt64) {
        tracker.set(page, .present, demand: demand)
        if demand { outstandingDemand -= 1 }
        if let bytes { receivedHashes[page] = PageHash.hash(UnsafeRawBufferPointer(start: bytes, count: arena.pageSize)) }
        if demand { phases.resolved(page, received: receivedAt, resolved: EventLoop.nowNanos()) }
    }

    /// The source's page still hashes as the stale copy held here: unprotect it, no transfer.
    private func unchanged(first: Int, count: Int) {
        for page in first..<(first + count) {
            let state = tracker.state(page)
            guard state == .stale || state == .staleRequested else { continue }
            do { try backend.refresh(page: page, fresh: nil) } catch { return fail(error.description) }
            report.unchangedPages += 1
            pageArrived(page, demand: state == .staleRequested, bytes: nil, receivedAt: urgent!.lastReceiveNanos)
        }
        completeIfDone()
    }

    /// A pre-copy page: written through the io view while the guest has not started here.
    private func precopy(_ frame: ParsedFrame) {
        let first = Int(frame.header.arg)
        let pageSize = arena.pageSize
        for k in 0..<Int(frame.header.count) {
            let bytes = frame.payload.baseAddress! + k * pageSize
            arena.ioPage(first + k).copyMemory(from: bytes, byteCount: pageSize)
            receivedHashes[first + k] = PageHash.hash(UnsafeRawBufferPointer(start: bytes, count: pageSize))
            if tracker.state(first + k) != .present { tracker.set(first + k, .present) }
        }
        report.precopyPages += Int(frame.header.count)
    }

    // MARK: Progress, liveness, ending

    private func tick() {
        let now = EventLoop.nowNanos()
        if let bulk, bulk.held, now - bulk.heldSinceNanos > 20_000_000 {
            // Demand has held the background stream for 20 ms: let it flow until demand goes quiet
            // and starts again, so the migration always moves on.
            bulk.resumeReading()
        }
        let lastHeard = max(startNanos, urgent?.lastReceiveNanos ?? 0, bulk?.lastReceiveNanos ?? 0)
        if phase != .finished, Double(now - lastHeard) / 1e9 > configuration.peerTimeoutSeconds {
            return fail("no data from the source for \(configuration.peerTimeoutSeconds) s (peer timeout)")
        }
        if phase == .migrating, now - lastProgressNanos > 1_000_000_000 {
            lastProgressNanos = now
            configuration.progress("destination: \(tracker.presentCount)/\(arena.pageCount) pages "
                + "(\(100 * tracker.presentCount / arena.pageCount)%), \(report.demandPages) on demand")
        }
    }

    private func completeIfDone() {
        guard phase == .migrating, tracker.isComplete, let sourceDigest else { return }
        var digest = ArenaDigest()
        for page in 0..<arena.pageCount { digest.add(page: UInt64(page), hash: receivedHashes[page]) }
        report.digestMatch = digest.value == sourceDigest
        report.sourceDigest = hex(sourceDigest)
        report.destinationDigest = hex(digest.value)
        report.elapsedSeconds = Double(EventLoop.nowNanos() - startNanos) / 1e9
        urgent?.send(.done(pagesReceived: UInt64(report.demandPages + report.backgroundPages), digest: digest.value))
        urgent?.flush()
        if !report.digestMatch {
            report.error = "digest mismatch: source \(hex(sourceDigest)), destination \(hex(digest.value))"
        }
        configuration.progress("destination: all \(arena.pageCount) pages present in \(String(format: "%.2f", report.elapsedSeconds)) s; digest \(report.digestMatch ? "matches" : "DIFFERS")")
        teardown()
    }

    private func connectionClosed(_ which: String, _ reason: TCPConnection.CloseReason) {
        guard phase != .finished else { return }
        fail("the source's \(which) connection ended: \(reason)")
    }

    private func protocolError(_ message: String) {
        urgent?.fail(.protocolViolation, message)
        fail("protocol error: \(message)")
    }

    /// Ends the migration as failed: the guest is told to stop and released.
    private func fail(_ reason: String) {
        guard phase != .finished else { return }
        report.error = "\(reason); \(tracker.missingCount) of \(arena.pageCount) pages still missing"
        report.pagesMissing = tracker.missingCount
        guest?.abort.store(true, ordering: .relaxed)
        teardown()
    }

    private func teardown() {
        phase = .finished
        backend.release()  // unregister: a guest thread still blocked on a fault retries and goes on
        poller?.close()
        timer?.close()
        busyPoll?.close()
        urgent?.closeWhenFlushed()
        bulk?.close()
        loop.shutdown()
    }

    /// After the loop: waits for the guest, verifies the arena and fills the report.
    private func finishGuest() {
        report.pagesMissing = tracker.missingCount
        report.phases = phases.summary
        guard let guest else { return }
        let finished = guest.wait(seconds: configuration.guestDeadlineSeconds)
        if finished {
            phases.collectWakeUps(pageCount: arena.pageCount)
            report.phases = phases.summary
        }
        var summary = GuestSummary(threads: configuration.guest.threads, pattern: configuration.guest.pattern)
        summary.finished = finished
        var latency = LatencySummary.makeHistogram()
        if finished {
            var firstStart = UInt64.max
            var lastEnd: UInt64 = 0
            for result in guest.results {
                summary.accesses += result.accesses
                summary.pagesTouched += result.pagesTouched
                summary.demandFaults += result.demandFaults
                summary.writes += result.writes
                summary.mismatches += result.mismatches
                summary.firstMismatch = summary.firstMismatch ?? result.firstMismatch
                latency.add(result.faultLatency)
                firstStart = min(firstStart, result.firstTouchStartNanos)
                lastEnd = max(lastEnd, result.lastTouchEndNanos)
            }
            summary.touchSeconds = lastEnd > firstStart ? Double(lastEnd - firstStart) / 1e9 : 0
            report.faultLatencyMicros = LatencySummary(latency)
            faultLatencyHistogram = latency
        } else if report.error == nil {
            report.error = "the guest did not finish within \(configuration.guestDeadlineSeconds) s"
        }
        report.guest = summary
        if report.error == nil, summary.mismatches > 0 {
            report.error = "the guest read \(summary.mismatches) wrong pages; first: \(summary.firstMismatch ?? "?")"
        }
        if report.error == nil, finished, configuration.verifyArena {
            let check = guest.verifyWholeArena()
            report.arenaVerified = check.firstBad == nil
            if let bad = check.firstBad { report.error = "arena verification failed: \(bad)" }
        }
        report.succeeded = report.error == nil
    }
}
