import CGuestAccess
import Histogram
import Synchronization

/// The guest running on the destination: threads that read (and sometimes
/// write) their own pages like vCPUs, verify every page they read against the
/// versions that came at switch-over, and time each first access of a page
/// that had to be fetched on demand.
///
/// Threading: `start` and `wait` from one controlling thread; the guest threads
/// touch only guest memory, their own slice of `versions`, their own result,
/// and read `tracker` flags. `abort` may be set from any thread.
public final class DestinationGuest: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var threads = 4
        public var pattern = AccessPattern.random
        /// Fraction of accesses that also write a new version.
        public var writeRatio = 0.2
        public var seed: UInt64 = 1
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
        /// Nanoseconds from the first access of a demand-fetched page until it returned.
        public var faultLatency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    }

    let arena: Arena
    let versions: GuestVersions
    let tracker: PageTracker
    let touchLog: TouchLog?
    let configuration: Configuration
    private let threads = GuestThreads()
    private let resultSlots: UnsafeMutablePointer<ThreadResult>
    /// Set when the migration failed: threads stop at their next access.
    public let abort = Atomic<Bool>(false)

    public init(arena: Arena, versions: GuestVersions, tracker: PageTracker, touchLog: TouchLog? = nil,
                configuration: Configuration) {
        self.arena = arena
        self.versions = versions
        self.tracker = tracker
        self.touchLog = touchLog
        self.configuration = configuration
        resultSlots = .allocate(capacity: configuration.threads)
        resultSlots.initialize(repeating: ThreadResult(), count: configuration.threads)
    }

    deinit {
        resultSlots.deinitialize(count: configuration.threads)
        resultSlots.deallocate()
    }

    public func start() {
        let n = configuration.threads
        threads.start(count: n, name: "guest") { [self] t in
            let pages = Array(stride(from: t, to: arena.pageCount, by: n))
            let order = configuration.pattern.order(pages: pages, seed: configuration.seed &+ UInt64(t))
            run(thread: t, of: n, order: order, result: resultSlots + t)
        }
    }

    private func run(thread t: Int, of n: Int, order: [Int], result: UnsafeMutablePointer<ThreadResult>) {
        let pageSize = arena.pageSize
        var rng = SplitMix64(seed: configuration.seed ^ 0xA5A5 &+ UInt64(t))
        let writeThreshold = UInt64(configuration.writeRatio * Double(UInt64.max >> 11)) << 11
        var touched = [Bool](repeating: false, count: arena.pageCount / n + 1)
        result.pointee.firstTouchStartNanos = EventLoop.nowNanos()
        for page in order {
            if abort.load(ordering: .relaxed) { break }
            let address = arena.guestPage(page)
            let first = !touched[page / n]
            let start = EventLoop.nowNanos()
            if first { touchLog?.started(page, at: start) }
            _ = guest_read_u64(address)  // the access that faults when the page is not here yet
            let end = EventLoop.nowNanos()
            result.pointee.accesses += 1
            if first {
                touchLog?.ended(page, at: end)
                touched[page / n] = true
                result.pointee.pagesTouched += 1
                if tracker.wasDemandFetched(page) {
                    result.pointee.demandFaults += 1
                    _ = result.pointee.faultLatency.record(end - start)
                }
            }
            if !PageContent.verify(address, index: page, version: versions[page], pageSize: pageSize) {
                if abort.load(ordering: .relaxed) { break }  // released by a failed migration, not bad data
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

    /// Waits for every guest thread, at most `seconds`; true when all finished.
    public func wait(seconds: Double) -> Bool { threads.wait(seconds: seconds) }

    /// Per-thread results; only after `wait` returned true.
    public var results: [ThreadResult] { Array(UnsafeBufferPointer(start: resultSlots, count: configuration.threads)) }

    /// Checks every page against the guest's versions (after migration and guest are done).
    public func verifyWholeArena() -> (checked: Int, firstBad: String?) {
        for page in 0..<arena.pageCount
        where !PageContent.verify(arena.ioPage(page), index: page, version: versions[page], pageSize: arena.pageSize) {
            return (page, "page \(page): expected version \(versions[page]), found "
                + PageContent.describe(arena.ioPage(page), pageSize: arena.pageSize))
        }
        return (arena.pageCount, nil)
    }
}
