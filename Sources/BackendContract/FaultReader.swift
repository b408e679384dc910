import CUffd
import Dispatch
import Glibc
import MigrateAgent

/// Reads page-fault messages from a backend's userfaultfd on the calling
/// thread: `poll(2)` with a deadline, then one `read(2)` of a batch. It never
/// touches guest memory, so the thread using it cannot block on a fault.
final class FaultReader {
    private let uffd: Userfaultfd
    private let arena: Arena
    private let batch: UnsafeMutablePointer<uffd_msg>
    private static let batchSize = 16

    init(backend: any ProtectionBackend) {
        uffd = backend.uffd
        arena = backend.arena
        batch = .allocate(capacity: Self.batchSize)
    }

    deinit { batch.deallocate() }

    /// The page faults pending now, or that arrive before `deadline` ([] when none did).
    /// Throws `AgentError` when poll or read fail or an event other than a page fault arrives.
    func read(until deadline: DispatchTime) throws(AgentError) -> [PageFault] {
        while true {
            var entry = pollfd(fd: uffd.fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&entry, 1, Self.millis(until: deadline))
            if rc < 0 {
                if errno == EINTR { continue }
                throw .system("poll on the userfaultfd: \(String(cString: strerror(errno)))")
            }
            if entry.revents & Int16(POLLERR | POLLNVAL) != 0 {
                throw .system("poll on the userfaultfd reported revents 0x\(String(entry.revents, radix: 16))")
            }
            guard rc > 0, entry.revents & Int16(POLLIN) != 0 else { return [] }
            let count: Int
            do { count = try uffd.readMessages(into: batch, capacity: Self.batchSize) } catch { throw .system(error.description) }
            if count == 0 {  // another reader took it, or a spurious wake-up
                if DispatchTime.now() >= deadline { return [] }
                continue
            }
            return try (0..<count).map { (i) throws(AgentError) -> PageFault in try fault(in: batch + i) }
        }
    }

    /// The page faults pending right now, without waiting.
    func readPending() throws(AgentError) -> [PageFault] { try read(until: .now()) }

    private func fault(in message: UnsafeMutablePointer<uffd_msg>) throws(AgentError) -> PageFault {
        let event = cuffd_msg_event(message)
        guard event == CUFFD_EVENT_PAGEFAULT else {
            throw .system("unexpected userfaultfd event 0x\(String(event, radix: 16)) (only page faults were negotiated)")
        }
        let address = cuffd_msg_fault_address(message)
        return PageFault(address: address, flags: cuffd_msg_fault_flags(message), page: arena.pageIndex(ofGuestAddress: address))
    }

    /// Milliseconds from now to `deadline` for poll(2), rounded up, 0 when past.
    private static func millis(until deadline: DispatchTime) -> Int32 {
        let now = DispatchTime.now().uptimeNanoseconds
        guard deadline.uptimeNanoseconds > now else { return 0 }
        return Int32(min((deadline.uptimeNanoseconds - now + 999_999) / 1_000_000, 60_000))
    }
}
