import Glibc
import Wire

/// Puts arriving pages in place, straight from the receive buffer: absent pages
/// with `UFFDIO_COPY` (a run at a time), stale pages by refresh and unprotect,
/// pages already here counted as duplicates; pre-copy pages through the io view
/// before the guest runs here; "unchanged" answers by unprotecting the held copy.
/// Records each page's hash for the digest and for later refresh requests.
/// Runs of absent background pages go to the `BackgroundInstaller`'s thread
/// while the guest faults (`handsOff`) and it has room; their bookkeeping ends in
/// `collectBackground`. With no fault for `Tuning.installerHandOffNanos` the loop
/// installs them itself: each hand-off wakes a thread on the other CPU, and with
/// no fault to serve the loop has nothing better to do (an idle 512 MiB migration
/// took 0.19-0.23 s handed off, 0.15-0.18 s on the loop).
///
/// Hot path for demand pages: no locks, no allocation.
/// Threading: the destination's loop thread only (asserted in debug builds).
final class PageInstaller {
    /// What arrived, for the report.
    struct Counts {
        /// Pages that answered a demand request.
        var demand = 0
        /// Pages from the background stream.
        var background = 0
        /// Pages that arrived again after they were installed (demand/background race).
        var duplicates = 0
        /// `UFFDIO_COPY` answered EEXIST: the page was already there.
        var eexistRaces = 0
        /// Stale pages refreshed with new bytes.
        var refreshed = 0
        /// Stale pages the source reported unchanged: unprotected without a transfer.
        var unchanged = 0
        /// Pages received before switch-over, written through the io view.
        var precopy = 0
        /// Pages that came as answers to requests never made (installed, and counted here).
        var unrequested = 0
        /// Pages that arrived after the guest gave them back: not installed (they read zeros).
        var discardedRemoved = 0
        /// Installs cut short by an unread event (`EAGAIN`), redone after reading it.
        var deferred = 0
        /// Pages that came as all-zero runs (`zeroPages`), before or after switch-over.
        var zero = 0
        /// Background pages the installer thread installed (the rest of `background`, the loop).
        var onInstallerThread = 0
    }

    private let loop: EventLoop
    private let space: any GuestPageSpace
    private let resolver: any PageResolver
    /// Our own arena, where pre-copy pages are written (nil for a VMM's memory: no pre-copy).
    private let ioArena: Arena?
    private let tracker: PageTracker
    private let hashes: ReceivedHashes
    private let phases: FaultPhaseClock
    private let flow: BackgroundFlow
    private let faults: FaultService
    private let busyPoll: BusyPoll
    /// Installs background runs off the loop (nil: everything is installed here).
    private let background: BackgroundInstaller?
    /// When runs go to `background` (`--install-thread`).
    private let installThread: InstallThreadUse
    private(set) var counts = Counts()
    /// One page of zeros, for stale pages refreshed by a `zeroPages` run.
    private let zeroPage: UnsafeMutableRawPointer

    init(resolver: any PageResolver, ioArena: Arena?, tracker: PageTracker, hashes: ReceivedHashes, phases: FaultPhaseClock,
         flow: BackgroundFlow, faults: FaultService, busyPoll: BusyPoll, background: BackgroundInstaller?,
         installThread: InstallThreadUse = .whileFaulting, loop: EventLoop) {
        self.loop = loop
        self.space = resolver.space
        self.resolver = resolver
        self.ioArena = ioArena
        self.tracker = tracker
        self.hashes = hashes
        self.phases = phases
        self.flow = flow
        self.faults = faults
        self.busyPoll = busyPoll
        self.background = background
        self.installThread = installThread
        zeroPage = .allocate(byteCount: space.pageSize, alignment: 4096)
        zeroPage.initializeMemory(as: UInt8.self, repeating: 0, count: space.pageSize)
    }

    deinit { zeroPage.deallocate() }

    /// Where the bytes of a run are: in a `pages` frame's payload, still in the
    /// receive buffer, or all zero (a `zeroPages` run, which carries none).
    private enum RunBytes {
        case payload(UnsafeRawPointer)
        case zeros
    }

    /// Installs the pages of a `pages` frame whose payload is still in the receive buffer.
    func install(_ frame: ParsedFrame, demand: Bool, receivedAt: UInt64) throws(AgentError) {
        try place(first: Int(frame.header.arg), count: Int(frame.header.count), .payload(frame.payload.baseAddress!),
                  demand: demand, receivedAt: receivedAt)
    }

    /// Installs a `zeroPages` run of the background stream: absent pages get a zero
    /// page (`UFFDIO_ZEROPAGE`), stale ones are refreshed with zeros.
    func installZero(first: Int, count: Int, receivedAt: UInt64) throws(AgentError) {
        try place(first: first, count: count, .zeros, demand: false, receivedAt: receivedAt)
    }

    /// Puts `count` pages from `first` in place, by their state in the tracker.
    /// Background runs go in slices of `Tuning.backgroundSlice` pages with a look at
    /// the userfaultfd in between: a fault arriving mid-frame would otherwise wait for
    /// every COPY of the frame (each up to ~10 µs on memory the host must back again).
    private func place(first: Int, count: Int, _ source: RunBytes, demand: Bool, receivedAt: UInt64) throws(AgentError) {
        loop.assertOnLoop()
        let pageSize = space.pageSize
        func bytes(_ k: Int) -> UnsafeRawPointer {
            if case .payload(let payload) = source { payload + k * pageSize } else { UnsafeRawPointer(zeroPage) }
        }
        func record(_ k: Int) {
            if case .payload = source { hashes.record(first + k, bytes: bytes(k)) } else { hashes.recordZero(first + k) }
        }
        var i = 0
        var installed = 0
        var stall = InstallStall()
        while i < count {
            let state = tracker.state(first + i)
            switch state {
            case .present, .arriving:
                counts.duplicates += 1
                i += 1
                continue
            case .removed:
                // The guest gave it back: it reads zeros. Its hash still counts for the digest.
                record(i)
                counts.discardedRemoved += 1
                i += 1
                continue
            case .stale, .staleRequested:
                hashes.forget(first + i)  // while the stale bytes are still here
                try resolver.refresh(page: first + i, fresh: bytes(i))
                counts.refreshed += 1
                arrived(first + i, demand: state == .staleRequested, bytes: bytes(i), receivedAt: receivedAt)
                installed += 1
                i += 1
                continue
            case .absent, .requested:
                break
            }
            if !demand, state == .absent, case .payload(let payload) = source, let background, handsOff(at: receivedAt),
               background.hasFreeSlot {
                // Requested pages stay below: installing them here answers their faults sooner.
                var end = i + 1
                while end < count, end - i < background.slotPages, tracker.state(first + end) == .absent { end += 1 }
                for k in i..<end { tracker.set(first + k, .arriving) }
                background.offer(first: first + i, count: end - i, from: payload + i * pageSize)
                i = end
                if i < count {  // the copy into the slot takes a while too: look at the faults
                    try faults.drain()
                    guard faults.serving else { return }
                }
                continue
            }
            var end = i
            var answered = 0
            while end < count, demand || end - i < Tuning.backgroundSlice,
                  case let s = tracker.state(first + end), s == .absent || s == .requested {
                tracker.set(first + end, .present, demand: s == .requested)  // before the wake: the guest reads it
                if s == .requested { answered += 1 } else if demand { counts.unrequested += 1 }
                end += 1
            }
            let outcome = switch source {
            case .payload: try resolver.installAbsent(first: first + i, count: end - i, from: bytes(i))
            case .zeros: try resolver.installZero(first: first + i, count: end - i)
            }
            counts.eexistRaces += outcome.alreadyPresent
            if outcome.interrupted {
                // An event waits to be read (a VMM's removal): give back what was not
                // installed, read the events, and look at those pages again.
                let done = i + outcome.installed + outcome.alreadyPresent
                for k in done..<end {
                    let wasRequested = tracker.wasDemandFetched(first + k)
                    tracker.set(first + k, wasRequested ? .requested : .absent)
                    if wasRequested { answered -= 1 }
                }
                if done > i {
                    stall.progressed()
                } else if !stall.waitBeforeRetry() {
                    let ioctl = if case .zeros = source { "UFFDIO_ZEROPAGE" } else { "UFFDIO_COPY" }
                    throw .kernel(UffdError("\(ioctl) of page \(first + i) (EAGAIN for \(InstallStall.seconds) s)", code: EAGAIN))
                }
                end = done
                counts.deferred += 1
            }
            flow.demandAnswered(answered)
            let resolvedAt = EventLoop.nowNanos()
            for k in i..<end {
                record(k)
                if tracker.wasDemandFetched(first + k) { phases.resolved(first + k, received: receivedAt, resolved: resolvedAt) }
            }
            installed += end - i
            i = end
            if outcome.interrupted || (!demand && i < count) {
                try faults.drain()
                guard faults.serving else { return }
            }
        }
        if case .zeros = source { counts.zero += installed }
        if demand {
            counts.demand += installed
            busyPoll.extend(from: receivedAt)  // the woken guest thread is likely to fault again soon
        } else {
            counts.background += installed
        }
    }

    /// Takes back the runs the background installer finished: their pages are present.
    func collectBackground() throws(AgentError) {
        loop.assertOnLoop()
        var failure: AgentError?
        background?.collect { slot in
            if let error = slot.error {
                failure = failure ?? error
                return
            }
            for page in slot.first..<(slot.first + slot.count) where tracker.state(page) == .arriving {
                tracker.set(page, .present)
            }
            counts.background += slot.outcome.installed
            counts.onInstallerThread += slot.outcome.installed
            counts.eexistRaces += slot.outcome.alreadyPresent
            counts.discardedRemoved += slot.discarded
            counts.deferred += slot.deferred
        }
        if let failure { throw failure }
    }

    /// Whether background runs go to the installer thread now: the guest faulted
    /// lately, so the loop keeps itself free for its faults.
    @inline(__always) private func handsOff(at now: UInt64) -> Bool {
        installThread.handsOff(now: now, lastFault: faults.lastFaultNanos)
    }

    /// Tells `flow` how much the background installer can take: nothing bounds the
    /// reads when there is none, or while the loop installs the stream itself.
    func reportRoom(to flow: BackgroundFlow) {
        guard let background, handsOff(at: EventLoop.nowNanos()) else { return flow.installerUnused() }
        flow.installer(free: background.freeBytes, resumeAt: background.resumeBytes)
    }

    /// The source's page still hashes as the stale copy held here: unprotect it, no transfer.
    func unchanged(first: Int, count: Int, receivedAt: UInt64) throws(AgentError) {
        loop.assertOnLoop()
        for page in first..<(first + count) {
            let state = tracker.state(page)
            guard state == .stale || state == .staleRequested else { continue }
            try resolver.refresh(page: page, fresh: nil)
            counts.unchanged += 1
            arrived(page, demand: state == .staleRequested, bytes: nil, receivedAt: receivedAt)
        }
    }

    /// A pre-copy page: written through the io view while the guest does not run here.
    func precopy(_ frame: ParsedFrame) throws(AgentError) {
        loop.assertOnLoop()
        guard let arena = ioArena else { throw .protocolViolation("pre-copy pages for a VMM's memory, which has no pre-copy") }
        let first = Int(frame.header.arg)
        let pageSize = arena.pageSize
        for k in 0..<Int(frame.header.count) {
            let bytes = frame.payload.baseAddress! + k * pageSize
            hashes.forget(first + k)  // an earlier round's copy, if any
            arena.ioPage(first + k).copyMemory(from: bytes, byteCount: pageSize)
            hashes.record(first + k, bytes: bytes)
            if tracker.state(first + k) != .present { tracker.set(first + k, .present) }
        }
        counts.precopy += Int(frame.header.count)
    }

    /// A run of all-zero pages before switch-over: zeros written through the io view
    /// (the page may hold an earlier round's bytes).
    func precopyZero(first: Int, count: Int) throws(AgentError) {
        loop.assertOnLoop()
        guard let arena = ioArena else { throw .protocolViolation("pre-copy pages for a VMM's memory, which has no pre-copy") }
        for page in first..<(first + count) {
            hashes.forget(page)
            arena.ioPage(page).initializeMemory(as: UInt8.self, repeating: 0, count: arena.pageSize)
            hashes.recordZero(page)
            if tracker.state(page) != .present { tracker.set(page, .present) }
        }
        counts.precopy += count
        counts.zero += count
    }

    /// Bookkeeping for one page resolved by refresh: state, hash, phases.
    private func arrived(_ page: Int, demand: Bool, bytes: UnsafeRawPointer?, receivedAt: UInt64) {
        tracker.set(page, .present, demand: demand)
        if demand { flow.demandAnswered() }
        if let bytes { hashes.record(page, bytes: bytes) }
        if demand { phases.resolved(page, received: receivedAt, resolved: EventLoop.nowNanos()) }
    }
}
