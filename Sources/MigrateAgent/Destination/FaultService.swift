import CUffd
import Wire

/// Reads the guest's page faults from the userfaultfd and carries out what
/// `FaultAction` decides for each: one request per absent page (later faults on
/// it share that request), a refresh request for a stale page, a wake or a map
/// for a page that is already here. Requests are queued on the urgent
/// connection and written with one `writev` per drain.
///
/// Hot path: no locks and no allocation; one `read` fetches up to
/// `Tuning.faultBatch` messages.
/// Threading: the destination's loop thread only (asserted in debug builds).
final class FaultService {
    /// What the faults were, for the report.
    struct Counts {
        /// Fault messages read from the userfaultfd.
        var messages = 0
        /// Faults on absent pages: requested, resolved with `UFFDIO_COPY` (`UFFDIO_CONTINUE` on preallocated memory).
        var missing = 0
        /// Faults on stale, protected pages: requested, resolved by refresh and unprotect.
        var stale = 0
        /// Faults on a page already requested: they waited on the first request.
        var shared = 0
        /// Faults on pages installed after the message was queued: woken, not requested.
        var late = 0
        /// Protected faults on pages already present: the held page was mapped.
        var heldPagesMapped = 0
        /// Faults whose kind disagreed with the tracker (logged as errors).
        var disagreements = 0
        /// `UFFD_EVENT_REMOVE` messages: ranges the guest gave back.
        var removedRanges = 0
        /// Pages given back before they arrived: they read zeros from then on.
        var removedPages = 0
        /// Faults on given-back pages, answered with a zero page.
        var zeroFilled = 0
    }

    private let loop: EventLoop
    private let space: any GuestPageSpace
    private let resolver: any PageResolver
    private let tracker: PageTracker
    private let hashes: ReceivedHashes
    private let phases: FaultPhaseClock
    private let flow: BackgroundFlow
    private let busyPoll: BusyPoll
    private let progress: @Sendable (String) -> Void
    private let messages: UnsafeMutablePointer<uffd_msg>
    private let absentKind: FaultKind
    /// Where requests go; set once the handshake is done.
    var urgent: TCPConnection?
    /// Told when requests went out (it yields the CPU to demand work) and when a
    /// fault waits on one of its own installs (it must not yield then).
    var background: BackgroundInstaller?
    /// In the current drain: a request went out; a fault waits on a page the installer holds.
    private var requestedThisDrain = false
    private var waitsOnInstaller = false
    /// In the current drain: a request was for a page just after the last one
    /// requested (a guest reading in address order, which the source's stream
    /// follows: throttling the stream would slow that guest down).
    private var followsStream = false
    private var lastRequested: Int?
    /// When the loop last read a page fault (monotonic nanoseconds; 0: never).
    private(set) var lastFaultNanos: UInt64 = 0
    /// True from switch-over until the migration ends: faults are served only then.
    var serving = false
    private(set) var counts = Counts()

    init(loop: EventLoop, resolver: any PageResolver, tracker: PageTracker, hashes: ReceivedHashes,
         phases: FaultPhaseClock, flow: BackgroundFlow, busyPoll: BusyPoll, progress: @escaping @Sendable (String) -> Void) {
        self.loop = loop
        self.space = resolver.space
        self.resolver = resolver
        self.tracker = tracker
        self.hashes = hashes
        self.phases = phases
        self.flow = flow
        self.busyPoll = busyPoll
        self.progress = progress
        absentKind = resolver.absentFaultKind
        messages = .allocate(capacity: Tuning.faultBatch)
    }

    deinit { messages.deallocate() }

    /// Reads and serves every fault pending in the userfaultfd, then writes the requests.
    func drain() throws(AgentError) {
        loop.assertOnLoop()
        var now: UInt64 = 0
        while serving {
            let n = try readAndRemove()
            if n == 0 { break }
            now = EventLoop.nowNanos()
            for i in 0..<n {
                let message = messages + i
                guard cuffd_msg_event(message) == CUFFD_EVENT_PAGEFAULT else { continue }
                counts.messages += 1
                lastFaultNanos = now
                guard let page = space.pageIndex(ofGuestAddress: cuffd_msg_fault_address(message)) else { continue }
                try serve(page, resolver.classify(flags: cuffd_msg_fault_flags(message)), now: now)
            }
            if n < Tuning.faultBatch { break }
        }
        urgent?.flush()
        if requestedThisDrain || waitsOnInstaller {
            background?.demandActivity(waitingOnInstalls: waitsOnInstaller, at: now)
            flow.demandActivity(waitingOnStream: waitsOnInstaller || followsStream, at: now)
            requestedThisDrain = false
            waitsOnInstaller = false
            followsStream = false
        }
        if now != 0 {
            let flushed = EventLoop.nowNanos()
            phases.flushed(at: flushed)
            busyPoll.extend(from: flushed)
        }
    }

    /// Reads a batch of messages and handles its removals first: a fault read in the
    /// same batch may be on a page given back after it faulted, and must then read
    /// zeros (the messages are not in causal order). Behind the installer's gate when
    /// it has one (a VMM's memory): no copy is in flight while an event is read.
    @inline(__always) private func readAndRemove() throws(AgentError) -> Int {
        let gate = background?.gate
        if let gate, !gate.tryClose() {
            // A copy is in flight: wait for it only when there is something to read
            // (most drains between two slices of the stream find nothing).
            guard resolver.uffd.hasMessages else { return 0 }
            gate.close { background?.raiseWorkerPriority() }
        }
        defer { gate?.open() }
        let n: Int
        do { n = try resolver.uffd.readMessages(into: messages, capacity: Tuning.faultBatch) } catch { throw .kernel(error) }
        for i in 0..<n where cuffd_msg_event(messages + i) == CUFFD_EVENT_REMOVE {
            removed(from: cuffd_msg_remove_start(messages + i), to: cuffd_msg_remove_end(messages + i))
        }
        return n
    }

    private func serve(_ page: Int, _ kind: FaultKind, now: UInt64) throws(AgentError) {
        let state = tracker.state(page)
        switch FaultAction.decide(state: state, kind: kind, keepsStaleCopy: resolver.keepsStaleCopy, absentKind: absentKind) {
        case .requestAbsent:
            requestedThisDrain = true
            if let last = lastRequested, page > last, page - last <= Tuning.followsStreamPages { followsStream = true }
            lastRequested = page
            counts.missing += 1
            flow.demandSent()
            tracker.set(page, .requested)
            sendRequest(page, withHash: false)
            phases.requested(page, at: now)
        case .requestStale(let withHash):
            requestedThisDrain = true
            counts.stale += 1
            requestFresh(page, withHash: withHash, at: now)
        case .shareRequest:
            counts.shared += 1
            if state == .arriving { waitsOnInstaller = true }
        case .wakeLate:
            counts.late += 1
            // A failed wake would leave the faulting thread blocked: that ends the migration.
            do { try resolver.uffd.wake(space.guestPage(page), length: space.pageSize) } catch { throw .kernel(error) }
        case .mapHeld:
            counts.heldPagesMapped += 1
            try resolver.refresh(page: page, fresh: nil)
        case .zeroFill:
            counts.zeroFilled += 1
            try zeroFill(page)
        case .disagreement:
            counts.disagreements += 1
            progress("destination: error: a \(kind.rawValue) fault on page \(page) disagrees with "
                + "the tracker, which holds it as \(state); fetching fresh bytes")
            requestFresh(page, withHash: false, at: now)
        }
    }

    /// The guest gave back `[start, end)` (a balloon's `MADV_DONTNEED`): pages not
    /// here yet will read zeros; pages already here are the guest's to drop. A
    /// thread blocked on a page of the range that was on its way is woken: its
    /// access faults again and reads zeros (the answer it waited on is dropped).
    private func removed(from start: UInt64, to end: UInt64) {
        counts.removedRanges += 1
        var waitedOn = false
        defer {
            if waitedOn, start < end {
                // Waking nobody is harmless; a failed wake (the VMM is gone) ends the migration on the next install.
                try? resolver.uffd.wake(UnsafeMutableRawPointer(bitPattern: UInt(start))!, length: Int(end - start))
            }
        }
        var address = start
        while address < end {
            defer { address += UInt64(space.pageSize) }
            guard let page = space.pageIndex(ofGuestAddress: address) else { continue }
            let state = tracker.state(page)
            switch state {
            case .absent, .requested, .arriving:
                if state == .requested {  // its answer will be dropped
                    flow.demandAnswered()
                    phases.abandoned(page)
                }
                // Arriving: the installer's copy is not in flight (the gate is closed)
                // and it skips pages no longer arriving (counted as discarded); one
                // copied already is zapped (counted as installed).
                waitedOn = waitedOn || state != .absent
                tracker.set(page, .removed)
                if state != .arriving { counts.removedPages += 1 }
            case .present, .stale, .staleRequested, .removed:
                // Present: the kernel dropped the guest's own copy; the next fault is MISSING
                // on a page the tracker holds, which reads zeros as well (see zeroFill).
                if state == .present { tracker.set(page, .removed) }
            }
        }
    }

    /// Resolves a fault on a given-back page with a zero page.
    func zeroFill(_ page: Int) throws(AgentError) {
        let outcome = try resolver.installZero(first: page, count: 1)
        if outcome.interrupted {
            // An event is unread, or its madvise thread has not run since it was read
            // (`mmap_changing`). This fault was read already and comes back only if woken.
            do { try resolver.uffd.wake(space.guestPage(page), length: space.pageSize) } catch { throw .kernel(error) }
            return
        }
        tracker.set(page, .present)
    }

    /// Asks for a stale page's fresh bytes, with the hash of the copy held here
    /// so that the source can answer "unchanged" instead of sending the page.
    private func requestFresh(_ page: Int, withHash: Bool, at now: UInt64) {
        flow.demandSent()
        tracker.set(page, .staleRequested)
        sendRequest(page, withHash: withHash)
        phases.requested(page, at: now)
    }

    /// Queues one page's request, with the held copy's hash when asked.
    private func sendRequest(_ page: Int, withHash: Bool) {
        if withHash {
            withUnsafeBytes(of: hashes.heldHash(of: page).littleEndian) { hash in  // the wire is little-endian
                urgent?.send(kind: .request, flags: RequestFlags.hasHash.rawValue, count: 1, arg: UInt64(page), payload: hash)
            }
        } else {
            urgent?.send(kind: .request, count: 1, arg: UInt64(page))
        }
    }

    /// After a resume: asks again for every page still waited on (requests are
    /// idempotent, the page index is their key) and writes them. Returns how many.
    func requestAgain() -> Int {
        loop.assertOnLoop()
        var resent = 0
        for page in 0..<space.pageCount {
            switch tracker.state(page) {
            case .requested: sendRequest(page, withHash: false)
            case .staleRequested: sendRequest(page, withHash: resolver.keepsStaleCopy)
            default: continue
            }
            resent += 1
        }
        urgent?.flush()
        return resent
    }
}
