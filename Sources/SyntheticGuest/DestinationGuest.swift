import MigrateAgent
import CGuestAccess
import Histogram
import Synchronization

/// The guest running on the destination: threads that read (and sometimes
/// write) their own pages like vCPUs, verify every page they read against the
/// versions that came at switch-over, and time each first access of a page
/// that had to be fetched on demand.
///
/// Threading: `start` on the destination's loop, `finish` after it; the guest
/// threads touch only guest memory, their own slice of `versions`, their own
/// result, and read the demand flags. `abort` from any thread.
public final class DestinationGuest: DestinationWorkload, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var threads = 4
        public var pattern = AccessPattern.random
        /// Fraction of accesses that also write a new version.
        public var writeRatio = 0.2
        public var seed: UInt64 = 1
        /// Check every page of the arena against the guest's versions at the end.
        public var verifyArena = true
        public init() {}
    }

    /// What one guest thread saw.
    public struct ThreadResult: Sendable {
        public var accesses = 0
        public var pagesTouched = 0
        public var demandFaults = 0
        public var writes = 0
        public var mismatches = 0
        public var firstMismatch: String?
        public var firstTouchStartNanos: UInt64 = 0
        public var lastTouchEndNanos: UInt64 = 0
        /// Nanoseconds from the first access of a demand-fetched page until it returned
        /// (two digits: a three-digit histogram per thread costs ~220 KB of the agent's memory).
        public var faultLatency = LatencySummary.makeCompactHistogram()
    }

    public let configuration: Configuration
    private let threads = GuestThreads()
    private let resultSlots: UnsafeMutablePointer<ThreadResult>
    /// Set when the migration failed: threads stop at their next access.
    private let aborted = Atomic<Bool>(false)
    // Set once by `start`, before the threads run; read-only afterwards.
    private var arena: Arena!
    private var versions: GuestVersions!
    private var context: DestinationGuestContext!
    private var started = false

    public init(configuration: Configuration) {
        self.configuration = configuration
        resultSlots = .allocate(capacity: configuration.threads)
        resultSlots.initialize(repeating: ThreadResult(), count: configuration.threads)
    }

    deinit {
        resultSlots.deinitialize(count: configuration.threads)
        resultSlots.deallocate()
    }

    public func start(state: UnsafeRawBufferPointer, context: DestinationGuestContext) throws(AgentError) {
        let pageCount = context.arena.pageCount
        guard let versions = GuestVersions(encoded: state, pageCount: pageCount) else {
            throw .protocolViolation("guest state of \(state.count) bytes does not fit \(pageCount) pages")
        }
        guard pageCount <= Int(UInt32.max) else {  // the touch log and a hot-set walk hold 4-byte indices
            throw .protocolViolation("the synthetic guest walks at most \(UInt32.max) pages, not \(pageCount)")
        }
        self.arena = context.arena
        self.versions = versions
        self.context = context
        started = true
        startThreads()
    }

    public func abort() { aborted.store(true, ordering: .relaxed) }

    public func cpuSeconds() -> Double? { started ? threads.cpuSeconds() : nil }

    public var threadCount: Int { configuration.threads }

    public var description: String { "\(configuration.threads) guest threads (\(configuration.pattern.rawValue))" }

    private func startThreads() {
        let n = configuration.threads
        threads.start(count: n, name: "guest") { [self] t in
            let walk = configuration.pattern.walk(first: t, stride: n, count: (arena.pageCount - t + n - 1) / n,
                                                  seed: configuration.seed &+ UInt64(t))
            run(thread: t, of: n, walk: walk, result: resultSlots + t)
        }
    }

    private func run(thread t: Int, of n: Int, walk: PageWalk, result: UnsafeMutablePointer<ThreadResult>) {
        let pageSize = arena.pageSize
        var rng = SplitMix64(seed: configuration.seed ^ 0xA5A5 &+ UInt64(t))
        let writeThreshold = UInt64(configuration.writeRatio * Double(UInt64.max >> 11)) << 11
        var touched = [UInt64](repeating: 0, count: arena.pageCount / n / 64 + 1)  // a bit per page of this thread
        result.pointee.firstTouchStartNanos = EventLoop.nowNanos()
        for step in 0..<walk.count {
            let page = walk[step]
            if aborted.load(ordering: .relaxed) { break }
            let address = arena.guestPage(page)
            let (word, bit) = (page / n).quotientAndRemainder(dividingBy: 64)
            let first = touched[word] & (1 << bit) == 0
            let start = EventLoop.nowNanos()
            if first { context.touchLog.started(thread: t, page: page, at: start) }
            _ = guest_read_u64(address)  // the access that faults when the page is not here yet
            let end = EventLoop.nowNanos()
            result.pointee.accesses += 1
            if first {
                touched[word] |= 1 << bit
                result.pointee.pagesTouched += 1
                if context.wasDemandFetched(page) {
                    context.touchLog.ended(thread: t, page: page, at: end)
                    result.pointee.demandFaults += 1
                    _ = result.pointee.faultLatency.record(end - start)
                }
            }
            if !PageContent.verify(address, index: page, version: versions[page], pageSize: pageSize) {
                if aborted.load(ordering: .relaxed) { break }  // released by a failed migration, not bad data
                result.pointee.mismatches += 1
                if result.pointee.firstMismatch == nil {
                    result.pointee.firstMismatch = "page \(page): expected version \(versions[page]), found "
                        + PageContent.describe(address, pageSize: pageSize)
                }
                continue
            }
            if rng.next() < writeThreshold {
                versions[page] &+= 1
                PageContent.fill(address, index: page, version: versions[page], pageSize: pageSize)
                result.pointee.writes += 1
            }
        }
        result.pointee.lastTouchEndNanos = EventLoop.nowNanos()
    }

    /// Waits for the guest threads, sums what they saw, and checks the whole arena.
    public func finish(within seconds: Double) -> DestinationGuestOutcome {
        var outcome = DestinationGuestOutcome()
        guard started else { return outcome }
        outcome.finished = threads.wait(seconds: seconds)
        var summary = GuestSummary(threads: configuration.threads, pattern: configuration.pattern.rawValue)
        summary.finished = outcome.finished
        guard outcome.finished else {
            outcome.summary = summary
            outcome.error = "the guest did not finish within \(seconds) s"
            return outcome
        }
        var firstStart = UInt64.max
        var lastEnd: UInt64 = 0
        for result in UnsafeBufferPointer(start: resultSlots, count: configuration.threads) {
            summary.accesses += result.accesses
            summary.pagesTouched += result.pagesTouched
            summary.demandFaults += result.demandFaults
            summary.writes += result.writes
            summary.mismatches += result.mismatches
            summary.firstMismatch = summary.firstMismatch ?? result.firstMismatch
            outcome.faultLatency.add(result.faultLatency)
            firstStart = min(firstStart, result.firstTouchStartNanos)
            lastEnd = max(lastEnd, result.lastTouchEndNanos)
        }
        summary.touchSeconds = lastEnd > firstStart ? Double(lastEnd - firstStart) / 1e9 : 0
        outcome.summary = summary
        if summary.mismatches > 0 {
            outcome.error = "the guest read \(summary.mismatches) wrong pages; first: \(summary.firstMismatch ?? "?")"
        } else if configuration.verifyArena, !aborted.load(ordering: .relaxed) {
            let bad = firstBadPage()
            outcome.arenaVerified = bad == nil
            if let bad { outcome.error = "arena verification failed: \(bad)" }
        }
        return outcome
    }

    /// Checks every page against the guest's versions (after migration and guest are done).
    private func firstBadPage() -> String? {
        for page in 0..<arena.pageCount
        where !PageContent.verify(arena.ioPage(page), index: page, version: versions[page], pageSize: arena.pageSize) {
            return "page \(page): expected version \(versions[page]), found "
                + PageContent.describe(arena.ioPage(page), pageSize: arena.pageSize)
        }
        return nil
    }
}
