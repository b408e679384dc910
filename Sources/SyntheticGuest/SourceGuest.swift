import MigrateAgent
import Foundation
import Synchronization

/// The guest while it still runs on the source: it fills every page, then
/// keeps writing random pages (bumping their versions, or rewriting the same
/// bytes) until paused at switch-over. Thread `t` of `n` writes only pages with `index % n == t`.
///
/// Threading: `fill`, `startDirtying` and `pause` from the controlling thread
/// (the source's loop); the guest threads touch only guest memory and their
/// slice of `versions`.
public final class SourceGuest: SourceWorkload, @unchecked Sendable {
    let arena: Arena
    public let versions: GuestVersions
    let threadCount: Int
    let seed: UInt64
    /// Pages per second written from `resume` until `pause` (0: none).
    let dirtyRate: Int
    private let stop = Atomic<Bool>(false)
    private let writes = Atomic<Int>(0)
    private var running: GuestThreads?

    public init(arena: Arena, threads: Int, dirtyRate: Int = 0, seed: UInt64 = 7) {
        self.dirtyRate = dirtyRate
        self.arena = arena
        self.versions = GuestVersions(pageCount: arena.pageCount, initial: 1)
        self.threadCount = max(1, threads)
        self.seed = seed
    }

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

    /// Starts writing random pages, about `dirtyRate` a second in all, until `pause`.
    public func resume() {
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
                usleep(10_000)  // a workload's pacing, not synchronisation
            }
        }
        running = threads
    }

    /// Stops the guest threads and waits for them: the arena is frozen after this.
    /// `whileWaiting` runs between short waits: a guest thread blocked on a
    /// synchronous write-protect fault needs the caller to resolve it.
    public func pause(whileWaiting service: () -> Void = {}) {
        stop.store(true, ordering: .relaxed)
        while let running, !running.wait(seconds: 0.001) { service() }
        running = nil
    }

    /// The versions of every page, little-endian UInt32 each.
    public func switchoverState() -> [UInt8] { versions.encoded() }

    /// Pages written since the fill.
    public var pagesWritten: Int { writes.load(ordering: .relaxed) }
}
