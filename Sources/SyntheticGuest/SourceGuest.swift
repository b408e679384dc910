import CGuestAccess
import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import Synchronization

/// The guest while it still runs on the source: it fills every page, then
/// keeps writing random pages (bumping their versions, or rewriting the same
/// bytes) until paused at switch-over. Thread `t` of `n` writes only pages with `index % n == t`.
///
/// With an access `pattern`, the threads instead read their pages in that
/// pattern (`hotset`: mostly the shared `HotSet`), at `accessRate` accesses a
/// second in all (0: as fast as they can, for throughput), and write the
/// pages they visit at `dirtyRate` a second in all. They count accesses
/// (`accesses`) and record which pages they touched (`takeTouched`), the
/// truth a working-set tracker is measured against.
///
/// Threading: `populate`, `resume`, `pause` and `takeTouched` from the
/// controlling thread (the source's loop); the guest threads touch only guest
/// memory, their slice of `versions`, the touched flags and their own counter.
public final class SourceGuest: SourceWorkload, @unchecked Sendable {
    let arena: Arena
    public let versions: GuestVersions
    let threadCount: Int
    let seed: UInt64
    /// Pages per second written from `resume` until `pause` (0: none).
    let dirtyRate: Int
    /// How the threads walk their pages while running; nil: only the random writes of `dirtyRate`.
    public let pattern: AccessPattern?
    /// Accesses per second in all with a `pattern` (0: unpaced).
    public let accessRate: Int
    public let hotSet: HotSet
    private let stop = Atomic<Bool>(false)
    /// The threads' pacing sleeps wait on this, so that `pause` wakes them at once, as a VM
    /// pause kicks its vCPUs, instead of after up to one 10 ms tick.
    private let wakeUp = DispatchSemaphore(value: 0)
    private let writes = Atomic<Int>(0)
    private let touched: TouchedPages
    /// One counter per thread, a cache line apart, so counting costs no shared writes.
    private let accessCounts: UnsafeMutablePointer<UInt64>
    private static let counterStride = 8
    private var running: GuestThreads?

    public init(arena: Arena, threads: Int, dirtyRate: Int = 0, seed: UInt64 = 7,
                pattern: AccessPattern? = nil, accessRate: Int = 0, hotSet: HotSet = HotSet()) {
        self.dirtyRate = dirtyRate
        self.arena = arena
        self.versions = GuestVersions(pageCount: arena.pageCount, initial: 1)
        self.threadCount = max(1, threads)
        self.seed = seed
        self.pattern = pattern
        self.accessRate = max(0, accessRate)
        self.hotSet = hotSet
        touched = TouchedPages(pageCount: arena.pageCount)
        let counters = max(1, threads) * Self.counterStride
        accessCounts = .allocate(capacity: counters)
        accessCounts.initialize(repeating: 0, count: counters)
    }

    deinit { accessCounts.deallocate() }

    /// Writes version 1 of every page, in parallel.
    public func populate() {
        let threads = GuestThreads()
        let n = threadCount
        threads.start(count: n, name: "source-fill") { [self] t in
            for page in stride(from: t, to: arena.pageCount, by: n) {
                PageContent.fill(arena.guestPage(page), index: page, version: versions[page], pageSize: arena.pageSize)
            }
        }
        _ = threads.wait(seconds: 3600)
    }

    /// Starts the guest threads until `pause`: with a `pattern`, the access workload;
    /// else writing random pages, about `dirtyRate` a second in all.
    public func resume() {
        if let pattern { return resumeAccessing(pattern) }
        let pagesPerSecond = dirtyRate
        guard pagesPerSecond > 0 else { return }
        let threads = GuestThreads()
        let n = threadCount
        let perThreadPerTick = max(1, pagesPerSecond / n / 100)
        threads.start(count: n, name: "source-guest") { [self] t in
            var rng = SplitMix64(seed: seed &+ UInt64(t))
            let owned = (arena.pageCount - t + n - 1) / n
            while !stop.load(ordering: .relaxed) {
                for _ in 0..<perThreadPerTick {
                    let page = t + n * Int(rng.next() % UInt64(max(1, owned)))
                    // One write in four stores the bytes the page already holds, as
                    // guests often do: dirty to the kernel, unchanged in content.
                    if rng.next() % 4 != 0 { versions[page] &+= 1 }
                    PageContent.fill(arena.guestPage(page), index: page, version: versions[page], pageSize: arena.pageSize)
                }
                writes.add(perThreadPerTick, ordering: .relaxed)
                pace(nanoseconds: 10_000_000)
            }
        }
        running = threads
    }

    /// Stops the guest threads and waits for them: the arena is frozen after this.
    /// `whileWaiting` runs between short waits: a guest thread blocked on a
    /// synchronous write-protect fault needs the caller to resolve it.
    public func pause(whileWaiting service: () -> Void = {}) {
        stop.store(true, ordering: .relaxed)
        for _ in 0..<threadCount { wakeUp.signal() }
        while let running, !running.wait(seconds: 0.001) { service() }
        running = nil
    }

    /// The versions of every page, little-endian UInt32 each.
    public func switchoverState() -> [UInt8] { versions.encoded() }

    /// Pages written since the fill.
    public var pagesWritten: Int { writes.load(ordering: .relaxed) }

    /// Accesses (reads and writes) the pattern workload made so far; published every few dozen accesses.
    public var accesses: Int {
        (0..<threadCount).reduce(0) { $0 + Int(atomic_load_u64(accessCounts + $1 * Self.counterStride)) }
    }

    /// The pages the guest touched since the previous call (or since it started), ascending.
    /// A page is marked after its access returned.
    public func takeTouched() -> [Int] { touched.take() }

    private func resumeAccessing(_ pattern: AccessPattern) {
        let threads = GuestThreads()
        let n = threadCount
        threads.start(count: n, name: "source-guest") { [self] t in
            let pages = Array(stride(from: t, to: arena.pageCount, by: n))
            guard !pages.isEmpty else { return }
            let order = pattern.order(pages: pages, seed: seed &+ UInt64(t), hotSet: hotSet)
            access(thread: t, of: n, order: order)
        }
        running = threads
    }

    /// One thread's accesses: in ticks of 10 ms when paced, else in batches of 64 between
    /// looks at the stop flag; a visit also writes while the thread is behind its share of `dirtyRate`.
    private func access(thread t: Int, of n: Int, order: [Int]) {
        var rng = SplitMix64(seed: seed ^ 0x5A5A &+ UInt64(t))
        let counter = accessCounts + t * Self.counterStride
        let perTick = accessRate > 0 ? max(1, accessRate / n / 100) : 64
        let writesPerSecond = Double(dirtyRate) / Double(n)
        let start = DispatchTime.now().uptimeNanoseconds
        var count: UInt64 = 0
        var written = 0
        var next = 0
        var tick = start
        while !stop.load(ordering: .relaxed) {
            let now = DispatchTime.now().uptimeNanoseconds
            let writeBudget = Int(writesPerSecond * Double(now - start) / 1e9)
            for _ in 0..<perTick {
                let page = order[next]
                next = next + 1 == order.count ? 0 : next + 1
                let address = arena.guestPage(page)
                if written < writeBudget {
                    if rng.next() % 4 != 0 { versions[page] &+= 1 }  // as in resume(): some writes keep the bytes
                    PageContent.fill(address, index: page, version: versions[page], pageSize: arena.pageSize)
                    written += 1
                } else {
                    _ = guest_read_u64(address)
                }
                touched.mark(page)
            }
            count += UInt64(perTick)
            atomic_store_u64(counter, count)
            if accessRate > 0 {
                tick += 10_000_000
                let after = DispatchTime.now().uptimeNanoseconds
                if tick > after { pace(nanoseconds: tick - after) }
            }
        }
        writes.add(written, ordering: .relaxed)
    }

    /// A workload's pacing (not synchronisation): sleeps, or returns early when paused.
    private func pace(nanoseconds: UInt64) {
        _ = wakeUp.wait(timeout: .now() + .nanoseconds(Int(nanoseconds)))
    }
}
