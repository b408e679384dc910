import CGuestAccess
import Glibc
import MigrateAgent
import SyntheticGuest

/// The kernel's own first-touch fault on anonymous memory, no userfaultfd:
/// the first write of each page of a fresh private mapping (the kernel
/// allocates and zeroes a page), timed around the write.
/// Stateless; runs on a measurement thread of its own.
enum FirstTouchBaseline {
    static func measure(pages: Int, seed: UInt64) throws(AgentError) -> MeasuredLatency {
        let pageSize = Arena.systemPageSize
        let size = pages * pageSize
        guard let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapping != MAP_FAILED else {
            throw .system("mmap of \(ByteSize(bytes: size)) anonymous memory: \(String(cString: strerror(errno)))")
        }
        defer { munmap(mapping, size) }
        nonisolated(unsafe) let base = mapping
        let order = AccessPattern.random.order(pages: Array(0..<pages), seed: seed)
        let thread = DeadlineThread("bench-first-touch") { () -> LatencySamples in
            let samples = LatencySamples(capacity: order.count)
            for page in order {
                let address = base + page * pageSize
                let start = EventLoop.nowNanos()
                guest_write_u64(address, UInt64(page))
                samples.append(EventLoop.nowNanos() - start)
            }
            return samples
        }
        guard let samples = thread.join(within: 120) else {
            throw .system("the first-touch baseline did not finish within 120 s")
        }
        for page in 0..<pages where guest_read_u64(base + page * pageSize) != UInt64(page) {
            throw .system("first-touch baseline: page \(page) does not hold what was written")
        }
        return MeasuredLatency(id: "first-touch", what: "first write to anonymous memory (kernel fault, no userfaultfd)",
                               placement: .unpinned, histogram: samples.histogram(droppingFirst: warmup(pages)))
    }

    /// Samples dropped at the start of a baseline (cold caches, page-table allocation).
    static func warmup(_ samples: Int) -> Int { min(200, samples / 20) }
}
