import CGuestAccess
import Dispatch
@_spi(Testing) import MigrateAgent
import SyntheticGuest
import Testing

/// What this kernel offers for access tracking (a failed probe offers nothing; `select` then reports it).
private let probe = try? KernelProbe.run()
private let hasMinor = probe.map { AccessTrackingMethod.minorSampling.isAvailable(on: $0) } ?? false
private let hasRWPAsync = probe.map { AccessTrackingMethod.rwpAsync.isAvailable(on: $0) } ?? false

/// Seconds any guest thread may take; after that the tracker is stopped (which releases it) and the test fails.
private let deadlineSeconds = 10.0

/// A fully populated source arena (every page written through the io view, version 1).
private func populatedArena(pages: Int, _ name: String) throws -> Arena {
    let arena = try Arena(size: pages * Arena.systemPageSize, name: name)
    for page in 0..<pages { PageContent.fill(arena.ioPage(page), index: page, version: 1, pageSize: arena.pageSize) }
    return arena
}

/// Reads `reads` and writes `writes` (word 0 rewritten with its own value) on a guest thread of
/// our own. On the deadline the tracker is stopped, which releases the thread, and the test fails.
private func touch(_ arena: Arena, reads: [Int] = [], writes: [Int] = [], tracker: any AccessTracking,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    let thread = DeadlineThread("tracker-guest") { [arena] () -> Bool in
        for page in reads { _ = guest_read_u64(arena.guestPage(page)) }
        for page in writes { guest_write_u64(arena.guestPage(page), UInt64(page)) }
        return (reads + writes).allSatisfy {
            PageContent.verify(arena.guestPage($0), index: $0, version: 1, pageSize: arena.pageSize)
        }
    }
    guard let intact = thread.join(within: deadlineSeconds) else {
        tracker.stop()
        Issue.record("the guest thread was still blocked after \(deadlineSeconds) s; stopped the tracker", sourceLocation: sourceLocation)
        _ = thread.join(within: deadlineSeconds)
        return
    }
    #expect(intact, "a touched page lost its bytes", sourceLocation: sourceLocation)
}

@Suite("Access trackers")
struct AccessTrackerTests {
    @Test("select picks the best method and names what a forced one lacks")
    func select() throws {
        let probe = try KernelProbe.run()
        let best = try AccessTrackingMethod.select(requested: nil, probe: probe)
        #expect(best == (hasRWPAsync ? .rwpAsync : .minorSampling))
        if !hasRWPAsync {
            do {
                _ = try AccessTrackingMethod.select(requested: .rwpAsync, probe: probe)
                Issue.record("select(.rwpAsync) succeeded without RWP")
            } catch AgentError.unsupported(let message) {
                #expect(message.contains("RWP_ASYNC") && message.contains(probe.kernelRelease), "\(message)")
                #expect(message.contains("available: minor-sampling") == hasMinor, "\(message)")
            }
        }
    }

    @Test("minor-sampling at 100%: touched pages are reported, untouched ones are not",
          .enabled(if: hasMinor, "this kernel has no MINOR faults on shmem"))
    func touchedReported() throws {
        try reportsTouched(.minorSampling)
    }

    @Test("rwp-async: touched pages are reported, untouched ones are not",
          .enabled(if: hasRWPAsync, "this kernel has no RWP_ASYNC (Linux 7.3): runs in scripts/test-rwp-vm via selftest"))
    func touchedReportedRWP() throws {
        try reportsTouched(.rwpAsync)
    }

    private func reportsTouched(_ method: AccessTrackingMethod) throws {
        let arena = try populatedArena(pages: 64, "tracker-touched-\(method.rawValue)")
        let tracker = try method.makeTracker(arena: arena, samplePercent: 100)
        defer { tracker.stop() }
        #expect(try tracker.scan() == [], "nothing touched yet")
        touch(arena, reads: [3, 10, 11, 40], writes: [20, 63], tracker: tracker)
        #expect(try tracker.scan() == [3, 10, 11, 20, 40, 63])
        #expect(try tracker.scan() == [], "an interval without accesses")
    }

    @Test("minor-sampling: reads count as well as writes", .enabled(if: hasMinor, "this kernel has no MINOR faults on shmem"))
    func readsAndWrites() throws {
        let arena = try populatedArena(pages: 16, "tracker-rw")
        let tracker = try MinorFaultSampler(arena: arena, samplePercent: 100)
        defer { tracker.stop() }
        touch(arena, reads: [2, 7], tracker: tracker)
        #expect(try tracker.scan() == [2, 7])
        touch(arena, writes: [5, 7], tracker: tracker)
        #expect(try tracker.scan() == [5, 7])
        #expect(tracker.costs.faults == 4)
        #expect(tracker.costs.scans == 2)
    }

    @Test("minor-sampling: a page touched in interval 1 and not in 2 is reported only in 1, and again when touched again",
          .enabled(if: hasMinor, "this kernel has no MINOR faults on shmem"))
    func reprotects() throws {
        let arena = try populatedArena(pages: 32, "tracker-reprotect")
        let tracker = try MinorFaultSampler(arena: arena, samplePercent: 100)
        defer { tracker.stop() }
        touch(arena, reads: [1, 2], tracker: tracker)
        #expect(try tracker.scan() == [1, 2])
        touch(arena, reads: [30], tracker: tracker)
        #expect(try tracker.scan() == [30])
        touch(arena, writes: [1], tracker: tracker)
        #expect(try tracker.scan() == [1])
    }

    @Test("minor-sampling below 100%: the sample rotates through every page, once per cycle",
          .enabled(if: hasMinor, "this kernel has no MINOR faults on shmem"))
    func sampleRotates() throws {
        let pages = 40
        let arena = try populatedArena(pages: pages, "tracker-sample")
        let tracker = try MinorFaultSampler(arena: arena, samplePercent: 25)
        defer { tracker.stop() }
        #expect(tracker.costs.pagesSampledPerInterval == 10)
        var seen: [Int] = []
        for _ in 0..<4 {
            touch(arena, reads: Array(0..<pages), tracker: tracker)  // every page, every interval
            let sampled = try tracker.scan()
            #expect(sampled.count == 10, "\(sampled)")
            seen += sampled
        }
        #expect(seen.sorted() == Array(0..<pages), "every page exactly once in four intervals of 25%")
        #expect(tracker.costs.faults == pages, "one fault per sampled page and interval")
    }

    @Test("minor-sampling: stop() releases a blocked guest thread and is idempotent",
          .enabled(if: hasMinor, "this kernel has no MINOR faults on shmem"))
    func stopReleases() throws {
        let arena = try populatedArena(pages: 4, "tracker-stop")
        // No handler thread: the fault stays unresolved until stop().
        let tracker = try MinorFaultSampler(arena: arena, samplePercent: 100, resolvesFaults: false)
        let thread = DeadlineThread("tracker-blocked") { [arena] in
            PageContent.verify(arena.guestPage(2), index: 2, version: 1, pageSize: arena.pageSize)
        }
        #expect(thread.join(within: 0.1) == nil, "the read of a sampled page did not block")
        tracker.stop()
        tracker.stop()
        let intact = thread.join(within: deadlineSeconds)
        #expect(intact == true, "stop() did not release the blocked thread (or it read wrong bytes)")
        #expect(throws: AgentError.self) { _ = try tracker.scan() }
        // Unprotected now: the guest runs on without the tracker.
        touch(arena, reads: [0, 1, 2, 3], tracker: tracker)
    }
}
