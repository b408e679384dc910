import CGuestAccess
import Dispatch
import Glibc
@testable import MigrateAgent
import SyntheticGuest
import Testing
import Wire

/// Seconds any wait may take; a guest thread still blocked then is released (the range unregistered).
private let deadlineSeconds = 10.0

/// A destination arena registered MISSING with a real userfaultfd, the installer over it,
/// and a loop on a thread of its own. Nothing reads the userfaultfd: a guest thread
/// blocked on a page is woken only by the installer's `UFFDIO_COPY`.
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

    init(pages: Int, name: String) throws {
        arena = try Arena(size: pages * Arena.systemPageSize, name: name)
        backend = try makeBackend(.missing, arena: arena)
        hashes = ReceivedHashes(pageCount: pages, pageSize: arena.pageSize, arena: arena)
        installer = BackgroundInstaller(resolver: backend, hashes: hashes)
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
    @Test("a guest thread blocked on an arriving page is woken by the installer's copy; hashes are recorded")
    func wakesBlockedGuest() throws {
        let pages = 2 * Tuning.installerSlotBytes / Arena.systemPageSize
        let rig = try Rig(pages: pages, name: "installer-wake")
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
