import Dispatch
import Glibc
import CUffd
import Synchronization

/// Installs background pages on a thread of its own, so that the loop only
/// reads faults, sends requests, installs demand pages and copies bulk pages
/// here. With the installs on the loop, a fault read while the stream flowed
/// waited behind them (`UFFDIO_COPY` allocates and charges a page, and the
/// page hash runs beside it): p50 about 14× the fault without the stream.
/// `PageInstaller` hands runs over only while the guest faults: with no fault
/// to serve, the loop installs faster itself than through a hand-off.
///
/// The loop copies a run of absent pages into one of `Tuning.installerSlots`
/// slots (`offer`), marks them `.arriving`, and goes on. The worker installs
/// the run with `UFFDIO_COPY` (thread-safe; it wakes any guest thread that
/// faulted on those pages meanwhile), records the pages' hashes, and signals
/// the loop, which marks them present (`collect`). The tracker keeps one
/// writer, the loop. A full ring means the destination installs slower than
/// the stream arrives: the loop installs what is left of the frame itself and
/// stops reading the bulk connection until half the ring is free again.
///
/// Demand first (`yieldsToDemand`): while the guest faults on pages it must
/// request (within `Tuning.installerYieldNanos`), the worker runs as `SCHED_IDLE`, so the loop,
/// the source and the guest's threads always get a CPU before it; otherwise it
/// runs as a normal thread and keeps pace with the stream. On two busy cores a
/// normal-priority worker left a woken loop waiting about 100 µs for a CPU; the
/// price is a slower stream while a guest keeps every core busy.
///
/// On preallocated memory (`PreallocatedPages`) a run has a place of its
/// own already: `offer` copies it straight into the io view (no ring), and the
/// worker hashes it there, before `UFFDIO_CONTINUE` lets the guest write it.
///
/// On a VMM's memory, which has removal events (a balloon), the worker copies
/// through an `InstallGate`: a few pages per pass, never while the loop reads the
/// userfaultfd, and only pages still `.arriving` in the tracker (a page given
/// back meanwhile is skipped: it reads zeros). An `EAGAIN` (an event not read
/// yet) is retried once the loop had a chance to read it. Our own arena has no
/// such events: no gate, and `UFFDIO_COPY` never answers `EAGAIN` there.
///
/// Threading: `offer`, `collect`, `stop` on the destination's loop thread. A
/// slot belongs to the worker from `offer` until `collect`; the indices are
/// atomics with release/acquire order, so each side sees the slot's bytes and
/// result (and the pages' hashes) written before the index moved. No lock, no
/// allocation per page.
final class BackgroundInstaller: @unchecked Sendable {
    /// One run handed to the worker, and what became of it.
    struct Slot {
        var first = 0
        var count = 0
        var outcome = InstallOutcome()
        /// Pages given back by the guest while the slot held them (a VMM's memory): not installed.
        var discarded = 0
        /// Copies cut short by an unread event (`EAGAIN`), retried after it was read.
        var deferred = 0
        var error: AgentError?
    }

    let slotPages: Int
    private let slotCount: Int
    private let pageSize: Int
    private let resolver: any PageResolver
    private let hashes: ReceivedHashes
    private let slots: UnsafeMutablePointer<Slot>
    /// The ring's bytes, `slotCount` runs (nil: runs are written in place, `inPlace`).
    private let bytes: UnsafeMutableRawPointer?
    /// Preallocated memory: runs go straight to their pages in the io view.
    private let inPlace: (any PreallocatedPages)?
    /// Slots offered (loop writes) and slots done (worker writes); both only grow.
    private let offered = Atomic<Int>(0)
    private let done = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// When the loop last sent demand requests (monotonic nanoseconds; 0 when a
    /// fault waits on this worker; relaxed: a hint).
    private let lastFaultNanos = Atomic<UInt64>(0)
    /// The worker's thread id (for `raiseWorkerPriority`; 0 until it runs), and whether
    /// the loop raised it back to normal priority since it last looked.
    private let workerTid = Atomic<Int32>(0)
    private let raised = Atomic<Bool>(false)
    /// Slots the loop took back (loop only).
    private var collected = 0
    private let work = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var running = false
    private var wake: LoopSignal?
    /// Set (under the lock) before `wake` closes: a worker that outlived `stop`
    /// never signals a closed handle. Taken once per batch, never per page.
    private let wakeClosed = Mutex(false)
    private let yieldsToDemand: Bool
    /// A VMM's memory: copies pass this gate, which the loop closes to read the
    /// userfaultfd (`FaultService`), and skip pages no longer `.arriving`.
    let gate: InstallGate?
    private let tracker: PageTracker?

    /// `gated`: the gate and the tracker, for memory with removal events (a VMM's).
    init(resolver: any PageResolver, hashes: ReceivedHashes, yieldsToDemand: Bool = true,
         gated: (gate: InstallGate, tracker: PageTracker)? = nil) {
        self.yieldsToDemand = yieldsToDemand
        gate = gated?.gate
        tracker = gated?.tracker
        self.resolver = resolver
        self.hashes = hashes
        pageSize = resolver.space.pageSize
        slotCount = Tuning.installerSlots
        slotPages = max(1, Tuning.installerSlotBytes / pageSize)
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: Slot(), count: slotCount)
        inPlace = resolver.preallocatedPages
        bytes = inPlace == nil ? .allocate(byteCount: slotCount * slotPages * pageSize, alignment: 4096) : nil
    }

    deinit {
        slots.deinitialize(count: slotCount)
        slots.deallocate()
        bytes?.deallocate()
    }

    /// Where slot `index`'s run is: its place in the ring, or its pages in the io view.
    private func runBytes(slot index: Int) -> UnsafeMutableRawPointer {
        if let inPlace { return inPlace.ioPage(slots[index].first) }
        return bytes! + index * slotPages * pageSize
    }

    /// Starts the worker; `completed` runs on the loop after slots were done.
    func start(loop: EventLoop, completed: @escaping () -> Void) {
        loop.assertOnLoop()
        wake = LoopSignal(loop: loop, completed)
        running = true
        startWorkerThread(name: "page-installer", finished: finished) { [self] in run() }
    }

    /// A slot is free for `offer`.
    var hasFreeSlot: Bool { running && offered.load(ordering: .relaxed) - collected < slotCount }

    /// Bytes of the free slots (0 when stopped).
    var freeBytes: Int { running ? (slotCount - (offered.load(ordering: .relaxed) - collected)) * slotPages * pageSize : 0 }

    /// Bytes of half the ring: reading waits for that much room, so that the loop
    /// and the worker do not wake each other for every slot.
    var resumeBytes: Int { slotCount / 2 * slotPages * pageSize }

    /// Runs offered and not collected yet.
    var inFlight: Int { offered.load(ordering: .relaxed) - collected }

    /// Hands `count` (≤ `slotPages`) absent pages from `first` to the worker; their
    /// bytes are copied, so the receive buffer may move on. Needs `hasFreeSlot`.
    func offer(first: Int, count: Int, from source: UnsafeRawPointer) {
        let index = offered.load(ordering: .relaxed)
        precondition(running && index - collected < slotCount && count <= slotPages)
        let slot = index % slotCount
        slots[slot] = Slot(first: first, count: count)
        runBytes(slot: slot).copyMemory(from: source, byteCount: count * pageSize)
        offered.store(index + 1, ordering: .releasing)
        work.signal()
    }

    /// The loop served faults at `now`. Requests went out: the worker yields to
    /// demand work for a while. A fault waits on a page the worker holds (a guest
    /// that reads right behind the stream): yielding would make it wait longer,
    /// so the worker runs at normal priority again.
    @inline(__always) func demandActivity(waitingOnInstalls: Bool, at now: UInt64) {
        lastFaultNanos.store(waitingOnInstalls ? 0 : now, ordering: .relaxed)
    }

    /// The loop waits on a copy the worker holds behind the gate while it may be
    /// `SCHED_IDLE` (preempted by busy threads): back to normal priority, so that the
    /// copy ends. The worker yields again at its next slot if demand still calls for it.
    func raiseWorkerPriority() {
        let tid = workerTid.load(ordering: .relaxed)
        guard yieldsToDemand, tid != 0 else { return }
        var param = sched_param(sched_priority: 0)
        _ = sched_setscheduler(tid, SCHED_OTHER, &param)  // a refusal leaves the wait as it was
        raised.store(true, ordering: .relaxed)
    }

    /// Hands each done slot to `body` on the loop, oldest first, and frees it.
    func collect(_ body: (Slot) -> Void) {
        let ready = done.load(ordering: .acquiring)
        while collected < ready {
            body(slots[collected % slotCount])
            collected += 1
        }
    }

    /// Ends the worker once it finished its current run. Loop thread; waits at most
    /// `seconds` (an install never blocks: after `release` it fails at once).
    /// Returns false when the worker was still running then: it is left behind,
    /// holding only this object, and it never touches the loop again.
    @discardableResult
    func stop(within seconds: Double = 5) -> Bool {
        guard running else { return true }
        running = false
        stopping.store(true, ordering: .releasing)
        work.signal()
        let ended = finished.wait(timeout: .now() + seconds) == .success
        wakeClosed.withLock { $0 = true }
        wake?.close()
        wake = nil
        return ended
    }

    /// Wakes the loop to collect, unless `stop` closed the way there. Worker thread.
    private func signalLoop() {
        wakeClosed.withLock { closed in if !closed { wake?.signal() } }
    }

    private func run() {
        workerTid.store(cuffd_gettid(), ordering: .relaxed)
        var yielding = false
        var next = 0
        var signaled = 0
        while true {
            work.wait()
            if stopping.load(ordering: .acquiring) { return }
            let ready = offered.load(ordering: .acquiring)
            guard next < ready else { continue }
            while next < ready {
                yielding = yieldToDemand(yielding)
                install(&slots[next % slotCount], from: runBytes(slot: next % slotCount))
                next += 1
                done.store(next, ordering: .releasing)
                // Wake the loop when half the ring came free, not per slot: each wake
                // preempts this thread when they share a CPU.
                if next - signaled >= slotCount / 2 {
                    signaled = next
                    signalLoop()
                }
            }
            if next == offered.load(ordering: .acquiring), signaled != next {  // caught up: the loop takes what is done
                signaled = next
                signalLoop()
            }
        }
    }

    /// Switches the worker to `SCHED_IDLE` while faults are being served, back to
    /// normal after; one system call per switch, none otherwise. Returns the new state.
    private func yieldToDemand(_ yielding: Bool) -> Bool {
        let yielding = raised.exchange(false, ordering: .relaxed) ? false : yielding
        let recent = yieldsToDemand && EventLoop.nowNanos() &- lastFaultNanos.load(ordering: .relaxed) < Tuning.installerYieldNanos
        guard recent != yielding else { return yielding }
        var param = sched_param(sched_priority: 0)
        // A refusal leaves the thread as it was: slower demand, nothing wrong.
        _ = sched_setscheduler(0, recent ? cuffd_sched_idle : SCHED_OTHER, &param)
        return recent
    }

    private func install(_ slot: inout Slot, from source: UnsafeRawPointer) {
        if let gate, let tracker { return installGated(&slot, from: source, gate: gate, tracker: tracker) }
        if let inPlace {
            // Hashed before the guest can see it, then mapped.
            for k in 0..<slot.count { hashes.recordOnWorker(slot.first + k, bytes: source + k * pageSize) }
            do { slot.outcome = try inPlace.mapWritten(first: slot.first, count: slot.count) } catch { slot.error = error }
            return
        }
        do throws(AgentError) {
            slot.outcome = try resolver.installAbsent(first: slot.first, count: slot.count, from: source)
            if slot.outcome.interrupted {
                throw .kernel(UffdError("UFFDIO_COPY of page \(slot.first + slot.outcome.installed) on the installer thread, "
                    + "which serves only memory without events", code: EAGAIN))
            }
        } catch {
            slot.error = error
            return
        }
        for k in 0..<slot.count {
            hashes.recordOnWorker(slot.first + k, bytes: source + k * pageSize)
        }
    }

    /// A VMM's memory: `Tuning.gatedInstallPages` at a time through the gate, each
    /// page only while the tracker still holds it `.arriving`. The slot's pages are
    /// all hashed, installed or not, as on the loop (a page given back still counts
    /// in the digest with the bytes the source sent).
    private func installGated(_ slot: inout Slot, from source: UnsafeRawPointer, gate: InstallGate, tracker: PageTracker) {
        var k = 0
        var stall = InstallStall()
        while k < slot.count {
            let end = min(slot.count, k + Tuning.gatedInstallPages)
            let before = k
            var interrupted = false
            gate.enter()
            while k < end {
                guard tracker.stateFromAnyThread(slot.first + k) == .arriving else {
                    slot.discarded += 1
                    k += 1
                    continue
                }
                var run = 1
                while k + run < end, tracker.stateFromAnyThread(slot.first + k + run) == .arriving { run += 1 }
                let outcome: InstallOutcome
                do throws(AgentError) {
                    outcome = try resolver.installAbsent(first: slot.first + k, count: run, from: source + k * pageSize)
                } catch {
                    gate.leave()
                    slot.error = error
                    return
                }
                slot.outcome.installed += outcome.installed
                slot.outcome.alreadyPresent += outcome.alreadyPresent
                k += outcome.installed + outcome.alreadyPresent
                if outcome.interrupted {
                    interrupted = true
                    break
                }
            }
            gate.leave()
            if k > before { stall.progressed() }
            guard interrupted else { continue }
            slot.deferred += 1
            // An event waits to be read: the loop reads it (and marks what it gave back)
            // when it wakes for it. Until then every copy answers EAGAIN: back off.
            if stopping.load(ordering: .acquiring) {
                slot.error = .kernel(UffdError("UFFDIO_COPY of page \(slot.first + k) on the installer thread (stopped while deferred)", code: EAGAIN))
                return
            }
            guard stall.waitBeforeRetry() else {
                slot.error = .kernel(UffdError("UFFDIO_COPY of page \(slot.first + k) on the installer thread "
                    + "(EAGAIN for \(InstallStall.seconds) s: an event was never read)", code: EAGAIN))
                return
            }
        }
        for k in 0..<slot.count { hashes.recordOnWorker(slot.first + k, bytes: source + k * pageSize) }
    }
}
