import CGuestAccess
import CUffd
import Dispatch
import Glibc
@testable import MigrateAgent
import SyntheticGuest
import Testing
import Wire

/// Seconds any wait may take; a guest thread still blocked then is released (the range unregistered).
private let deadlineSeconds = 10.0

/// A destination arena registered MISSING with a real userfaultfd (or, `preallocated`,
/// allocated first and registered MINOR as `destination --preallocate` does), the
/// installer over it, and a loop on a thread of its own. Nothing reads the userfaultfd:
/// a guest thread blocked on a page is woken only by the installer's `UFFDIO_COPY`
/// (or its copy into the io view and `UFFDIO_CONTINUE`).
private final class Rig: @unchecked Sendable {
    let arena: Arena
    let backend: any ProtectionBackend
    let hashes: ReceivedHashes
    let installer: BackgroundInstaller
    let loop: EventLoop
    /// Pages 0..<pages as the source holds them (version 1).
    let source: UnsafeMutableRawPointer
    private let loopThread: DeadlineThread<Bool>
    /// Signalled on the loop each time the installer reported finished runs.
    let completions = DispatchSemaphore(value: 0)
    /// Slots collected so far, in order (loop thread only while it runs).
    var collected: [BackgroundInstaller.Slot] = []

    /// `gated`: the tracker and gate of a VMM's memory (removal events).
    let tracker: PageTracker
    let gate: InstallGate?

    init(pages: Int, name: String, preallocated: Bool = false, gated: Bool = false) throws {
        arena = try Arena(size: pages * Arena.systemPageSize, name: name)
        if preallocated, case let code = arena.populateIOView(), code != 0 {
            throw AgentError.system("MADV_POPULATE_WRITE: \(String(cString: strerror(code)))")
        }
        backend = try makeBackend(preallocated ? .minor : .missing, arena: arena, preallocated: preallocated)
        hashes = ReceivedHashes(pageCount: pages, pageSize: arena.pageSize, arena: arena)
        tracker = PageTracker(pageCount: pages)
        gate = gated ? InstallGate() : nil
        installer = BackgroundInstaller(resolver: backend, hashes: hashes, gated: gate.map { [tracker] in ($0, tracker) })
        source = .allocate(byteCount: pages * arena.pageSize, alignment: 4096)
        for page in 0..<pages {
            PageContent.fill(source + page * arena.pageSize, index: page, version: 1, pageSize: arena.pageSize)
        }
        let loop = try EventLoop()
        self.loop = loop
        loopThread = DeadlineThread("installer-test-loop") { loop.run(); return true }
        let started = DispatchSemaphore(value: 0)
        loop.execute { [self] in
            installer.start(loop: loop) { [self] in
                installer.collect { collected.append($0) }
                completions.signal()
            }
            started.signal()
        }
        _ = started.wait(timeout: .now() + deadlineSeconds)
    }

    /// Runs `body` on the loop thread and waits for it.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T? {
        let done = DispatchSemaphore(value: 0)
        let result = ResultBox<T>()
        loop.execute {
            result.value = body()
            done.signal()
        }
        guard done.wait(timeout: .now() + deadlineSeconds) == .success else { return nil }
        return result.value
    }

    /// Waits until `count` slots were collected on the loop.
    func waitCollected(_ count: Int) -> [BackgroundInstaller.Slot]? {
        let deadline = DispatchTime.now() + deadlineSeconds
        while true {
            if let slots = onLoop({ [self] in collected }), slots.count >= count { return slots }
            guard completions.wait(timeout: deadline) == .success else { return nil }
        }
    }

    /// True once a fault message waits in the userfaultfd (a guest thread is blocked).
    func faultPending() -> Bool {
        var fd = pollfd(fd: backend.uffd.fd, events: Int16(POLLIN), revents: 0)
        return poll(&fd, 1, Int32(deadlineSeconds * 1000)) == 1
    }

    func close() {
        backend.release()  // no guest thread stays blocked, whatever failed
        _ = onLoop { [self] in
            installer.stop()
            loop.shutdown()
        }
        _ = loopThread.join(within: deadlineSeconds)
        source.deallocate()
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

@Suite("Background installer")
struct BackgroundInstallerTests {
    @Test("a guest thread blocked on an arriving page is woken by the installer's copy; hashes are recorded",
          arguments: [false, true])
    func wakesBlockedGuest(preallocated: Bool) throws {
        let pages = 2 * Tuning.installerSlotBytes / Arena.systemPageSize
        let rig = try Rig(pages: pages, name: "installer-wake", preallocated: preallocated)
        defer { rig.close() }
        let arena = rig.arena
        let guest = DeadlineThread("installer-guest") { [arena] () -> Bool in
            PageContent.verify(arena.guestPage(5), index: 5, version: 1, pageSize: arena.pageSize)
        }
        #expect(rig.faultPending(), "the guest's read of page 5 did not fault")
        let half = pages / 2
        let pageSize = arena.pageSize
        let offered = rig.onLoop { [rig] in
            rig.installer.offer(first: 0, count: half, from: rig.source)
            rig.installer.offer(first: half, count: half, from: rig.source + half * pageSize)
            return rig.installer.inFlight
        }
        #expect(offered == 2)
        guard let intact = guest.join(within: deadlineSeconds) else {
            Issue.record("the guest thread was still blocked after \(deadlineSeconds) s")
            return
        }
        #expect(intact, "page 5 does not hold the source's bytes")
        let slots = try #require(rig.waitCollected(2), "the installer did not report both runs")
        #expect(slots.map(\.first) == [0, half] && slots.allSatisfy { $0.error == nil })
        #expect(slots.map(\.outcome.installed).reduce(0, +) == pages)
        for page in 0..<pages {
            #expect(PageContent.verify(arena.ioPage(page), index: page, version: 1, pageSize: pageSize), "page \(page)")
        }
        // The worker recorded what it installed: the digest is that of the source's bytes.
        let expected = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: rig.source, count: pages * pageSize), pageSize: pageSize)
        let digest: UInt128? = rig.onLoop { [rig] in rig.hashes.digest() }
        #expect(digest == expected.value)
    }

    @Test("on preallocated memory a page that never arrived faults as protected; a zero run maps zeros over what the io view held")
    func preallocatedAbsentPage() throws {
        let rig = try Rig(pages: 8, name: "installer-prealloc", preallocated: true)
        defer { rig.close() }
        let arena = rig.arena
        let pageSize = arena.pageSize
        arena.ioPage(6).initializeMemory(as: UInt8.self, repeating: 0xAB, count: pageSize)  // bytes the guest must never see
        let guest = DeadlineThread("prealloc-guest") { [arena] () -> Bool in
            let page = UnsafeRawBufferPointer(start: arena.guestPage(6), count: pageSize)
            return page.allSatisfy { $0 == 0 }
        }
        #expect(rig.faultPending(), "the guest's read of a preallocated page that never arrived did not fault")
        let messages = UnsafeMutablePointer<uffd_msg>.allocate(capacity: 4)
        defer { messages.deallocate() }
        let read = try rig.backend.uffd.readMessages(into: messages, capacity: 4)
        try #require(read == 1)
        let kind = rig.backend.classify(flags: cuffd_msg_fault_flags(messages))
        #expect(kind == .protected && rig.backend.absentFaultKind == .protected)
        #expect(FaultAction.decide(state: .absent, kind: kind, keepsStaleCopy: true, absentKind: rig.backend.absentFaultKind)
            == .requestAbsent)
        let outcome = try rig.backend.installZero(first: 6, count: 1)
        #expect(outcome.installed == 1 && outcome.alreadyPresent == 0)
        guard let zeros = guest.join(within: deadlineSeconds) else {
            Issue.record("the guest thread was still blocked after \(deadlineSeconds) s")
            return
        }
        #expect(zeros, "page 6 did not read zeros after the zero run")
    }

    @Test("through the gate (a VMM's memory), pages given back while in the ring are skipped, and the rest installed")
    func gatedSkipsRemovedPages() throws {
        let pages = 2 * Tuning.installerSlotBytes / Arena.systemPageSize
        let rig = try Rig(pages: pages, name: "installer-gated", gated: true)
        defer { rig.close() }
        let pageSize = rig.arena.pageSize
        let half = pages / 2
        let removed = 5..<(half + 7)  // across both runs, and not a multiple of the gate's passes
        _ = rig.onLoop { [rig] in
            // Closed as the loop holds it while it reads a removal: nothing is copied meanwhile.
            rig.gate!.close()
            for page in 0..<pages { rig.tracker.set(page, .arriving) }
            rig.installer.offer(first: 0, count: half, from: rig.source)
            rig.installer.offer(first: half, count: half, from: rig.source + half * pageSize)
            for page in removed { rig.tracker.set(page, .removed) }
            rig.gate!.open()
            return true
        }
        let slots = try #require(rig.waitCollected(2), "the installer did not report both runs")
        #expect(slots.allSatisfy { $0.error == nil }, "\(slots.compactMap(\.error))")
        #expect(slots.map(\.outcome.installed).reduce(0, +) == pages - removed.count)
        #expect(slots.map(\.discarded).reduce(0, +) == removed.count)
        for page in 0..<pages {
            let bytes = UnsafeRawBufferPointer(start: rig.arena.ioPage(page), count: pageSize)
            if removed.contains(page) {
                #expect(bytes.allSatisfy { $0 == 0 }, "page \(page) was given back but installed")
            } else {
                #expect(PageContent.verify(rig.arena.ioPage(page), index: page, version: 1, pageSize: pageSize), "page \(page)")
            }
        }
        // Every page of the runs counts in the digest, given back or not (as on the loop).
        let expected = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: rig.source, count: pages * pageSize), pageSize: pageSize)
        let digest: UInt128? = rig.onLoop { [rig] in rig.hashes.digest() }
        #expect(digest == expected.value)
    }

    @Test("a full ring takes no more runs until the finished ones are collected")
    func fullRing() throws {
        let rig = try Rig(pages: Tuning.installerSlots + 1, name: "installer-full")
        defer { rig.close() }
        let pageSize = rig.arena.pageSize
        let full = rig.onLoop { [rig] () -> (Bool, Int) in
            // On the loop, nothing is collected meanwhile: the worker may finish, the slots stay taken.
            for page in 0..<Tuning.installerSlots { rig.installer.offer(first: page, count: 1, from: rig.source + page * pageSize) }
            return (rig.installer.hasFreeSlot, rig.installer.freeBytes)
        }
        #expect(full.map { $0.0 } == false && full.map { $0.1 } == 0)
        _ = try #require(rig.waitCollected(Tuning.installerSlots))
        let room = rig.onLoop { [installer = rig.installer] in installer.hasFreeSlot && installer.freeBytes == installer.resumeBytes * 2 }
        #expect(room == true)
    }

    @Test("an install the kernel refuses comes back to the loop as an error, naming the page")
    func failureReported() throws {
        let rig = try Rig(pages: 4, name: "installer-error")
        defer { rig.close() }
        rig.backend.release()  // unregistered: UFFDIO_COPY fails
        _ = rig.onLoop { [rig] in rig.installer.offer(first: 2, count: 2, from: rig.source) }
        let slots = try #require(rig.waitCollected(1))
        let error = try #require(slots.first?.error, "the refused install was reported as done")
        #expect("\(error)".contains("UFFDIO_COPY of page 2"), "\(error)")
    }
}
