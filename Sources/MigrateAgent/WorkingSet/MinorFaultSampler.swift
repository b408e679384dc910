import CGuestAccess
import Dispatch
import Glibc

/// Access tracking where the kernel has no RWP (this machine's 6.18): an
/// emulation with shmem MINOR faults. The guest view is registered `MODE_MINOR`
/// on a userfaultfd of its own. Each interval a sample of pages is dropped from
/// the guest view only (`MADV_DONTNEED`: the page stays in the memfd's page
/// cache), so the guest's next access to one of them faults as MINOR; the
/// sampler's handler thread (`MinorFaultHandler`) records the page and maps it
/// again with `UFFDIO_CONTINUE`. Reads and writes both fault.
///
/// The sample is `samplePercent` of the arena, walked in a fixed spread-out
/// order and rotated each scan, so every page is sampled over time (100: every
/// page, every interval). Each guest access to a sampled page costs one
/// synchronous fault, at most once per page per interval: the guest's slowdown
/// is bounded by the sample. `costs` counts the faults and the handler's time.
///
/// Threading: one controlling thread (see `AccessTracking`); the handler
/// thread only reads faults and calls ioctls, never touches guest memory.
public final class MinorFaultSampler: AccessTracking {
    public let method = AccessTrackingMethod.minorSampling
    public let samplePercent: Int

    private let arena: Arena
    private let uffd: Userfaultfd
    private let handler: MinorFaultHandler
    private let resolvesFaults: Bool
    private var order: SampleOrder
    private var sample: [Int]
    private var stopped = false
    private var ownCosts = AccessTrackingCosts()
    /// How long `stop` waits for the handler thread.
    private static let stopDeadlineSeconds = 5.0

    /// Registers the guest view for MINOR faults, drops the first sample and
    /// starts the handler thread. Throws `.unsupported` naming what the kernel lacks.
    public convenience init(arena: Arena, samplePercent: Int = 100) throws(AgentError) {
        try self.init(arena: arena, samplePercent: samplePercent, resolvesFaults: true)
    }

    /// `resolvesFaults: false` starts no handler thread: a sampled page's access stays
    /// blocked until `stop` (tests of the release path only).
    @_spi(Testing)
    public init(arena: Arena, samplePercent: Int, resolvesFaults: Bool) throws(AgentError) {
        guard (1...100).contains(samplePercent) else {
            throw .invalidArgument("the access sample must be 1...100 % of the arena, not \(samplePercent)")
        }
        guard arena.imagePath == nil else { throw .invalidArgument("access tracking needs a memfd arena, not a memory file") }
        self.arena = arena
        self.samplePercent = samplePercent
        self.resolvesFaults = resolvesFaults
        // Map every page first: on a MINOR range any unmapped page faults, sampled or not.
        // Nothing is registered yet, so this cannot trap.
        guard madvise(arena.guestBase, arena.size, 22 /* MADV_POPULATE_READ, Linux 5.14 */) == 0 else {
            throw .system("madvise(MADV_POPULATE_READ) on the guest view: \(String(cString: strerror(errno)))")
        }
        do {
            uffd = try Userfaultfd()
            try uffd.negotiate([.minorShmem])
            try uffd.register(arena.guestBase, length: arena.size, mode: .minor)
        } catch {
            throw .unsupported("access tracking 'minor-sampling' needs userfaultfd MINOR faults on shmem (Linux 5.13+): \(error)")
        }
        order = SampleOrder(pageCount: arena.pageCount, percent: samplePercent)
        sample = order.next()
        ownCosts.pagesSampledPerInterval = sample.count
        do {
            handler = try MinorFaultHandler(uffd: uffd, arena: arena)
            try drop(sample)
        } catch {
            try? uffd.unregister(arena.guestBase, length: arena.size)
            uffd.close()
            throw error
        }
        if resolvesFaults { handler.start() }
    }

    deinit { stop() }

    public var costs: AccessTrackingCosts {
        var costs = ownCosts
        costs.faults = handler.faults.load(ordering: .relaxed)
        costs.handlerNanos = handler.handlerNanos.load(ordering: .relaxed)
        return costs
    }

    /// The sampled pages accessed since the last scan. Order matters for losing nothing:
    /// the next sample is dropped before the flags are collected, so an access that
    /// mapped a page before the drop has set its flag already, and one after faults again.
    public func scan() throws(AgentError) -> [Int] {
        guard !stopped else { throw .invalidArgument("scan() after stop()") }
        if let failure = handler.failure.withLock({ $0 }) { throw failure }
        let start = DispatchTime.now().uptimeNanoseconds
        if sample.count < arena.pageCount {
            let next = order.next()
            try mapAgain(sample, except: Set(next))  // the old sample runs unobserved from now on
            sample = next
        }
        try drop(sample)
        var accessed: [Int] = []
        for page in 0..<arena.pageCount where atomic_load_relaxed_u8(handler.flags + page) != 0 {
            // A flag the handler sets after this exchange shows in the next scan.
            if atomic_exchange_u8(handler.flags + page, 0) != 0 { accessed.append(page) }
        }
        ownCosts.scans += 1
        ownCosts.scanNanos += DispatchTime.now().uptimeNanoseconds - start
        return accessed
    }

    /// Unregisters the guest view, which releases every guest thread blocked on a
    /// sampled page (it retries and maps the page-cache page), then ends the handler
    /// thread within a deadline. Idempotent.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        try? uffd.unregister(arena.guestBase, length: arena.size)
        if !handler.stop(until: .now() + Self.stopDeadlineSeconds) {
            Console.err("warning: the access sampler's thread did not end within \(Self.stopDeadlineSeconds) s")
        }
        uffd.close()
    }

    /// Drops pages from the guest view, in runs.
    private func drop(_ pages: [Int]) throws(AgentError) {
        if pages.count == arena.pageCount { return try arena.zapGuestView(page: 0, count: arena.pageCount) }
        for run in Self.runs(pages) { try arena.zapGuestView(page: run.lowerBound, count: run.count) }
    }

    /// Maps dropped pages again without a fault (`UFFDIO_CONTINUE`; pages an access
    /// mapped meanwhile answer EEXIST and are skipped).
    private func mapAgain(_ pages: [Int], except keep: Set<Int>) throws(AgentError) {
        for page in pages where !keep.contains(page) {
            var result = uffd.continue(arena.guestPage(page), length: arena.pageSize)
            while result.errno == EAGAIN { result = uffd.continue(arena.guestPage(page), length: arena.pageSize) }
            guard result.succeeded || result.alreadyPresent else {
                throw .kernel(UffdError("UFFDIO_CONTINUE of page \(page) leaving the sample", code: result.errno))
            }
        }
    }

    /// Consecutive pages of an ascending list, as ranges.
    private static func runs(_ pages: [Int]) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        for page in pages {
            if let last = runs.last, last.upperBound == page {
                runs[runs.count - 1] = last.lowerBound..<(page + 1)
            } else {
                runs.append(page..<(page + 1))
            }
        }
        return runs
    }
}

/// The emulation's rotating sample: the arena walked in a fixed order that
/// spreads each sample over the whole arena (position i is page i·step mod n,
/// step coprime with n), `percent` of it per interval, so every page is sampled
/// once every ⌈100 / percent⌉ intervals.
/// Threading: the sampler's controlling thread.
struct SampleOrder {
    let pageCount: Int
    let size: Int
    private let step: Int
    private var cursor = 0

    init(pageCount: Int, percent: Int) {
        self.pageCount = pageCount
        size = max(1, min(pageCount, pageCount * percent / 100))
        var step = max(1, Int(Double(pageCount) * 0.618_033_988_75))
        while Self.gcd(step, pageCount) != 1 { step += 1 }
        self.step = step
    }

    /// The next sample, ascending.
    mutating func next() -> [Int] {
        if size == pageCount { return Array(0..<pageCount) }
        var pages = (0..<size).map { ((cursor + $0) % pageCount) * step % pageCount }
        cursor = (cursor + size) % pageCount
        pages.sort()
        return pages
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
