import CUffd
import Dispatch
import FoundationEssentials
import Glibc
import Wire

/// Digests the frozen arena on a thread of its own at the lowest priority (it
/// runs while demand faults are served, and must not take the CPU from the loop
/// that serves them), then hands the value to the loop. If the loop has shut
/// down meanwhile, the value is dropped: `EventLoop.execute` refuses it.
enum DigestTask {
    static func start(arena: Arena, loop: EventLoop, done: @escaping @Sendable (ArenaDigest) -> Void) {
        startThread(named: "digest") {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(cuffd_gettid()), 19)
            let value = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size),
                                       pageSize: arena.pageSize)
            _ = loop.execute { done(value) }
        }
    }
}
