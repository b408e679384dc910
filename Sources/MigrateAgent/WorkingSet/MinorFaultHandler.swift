import CGuestAccess
import CUffd
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// The minor-fault sampler's own thread: reads the MINOR faults of the sampled
/// pages, sets the page's accessed flag and maps it again (`UFFDIO_CONTINUE`,
/// the page is still in the page cache), which wakes the guest thread.
///
/// The fault path takes no lock and allocates nothing: one message buffer, one
/// flag byte per page (relaxed atomic stores; the controller swaps them back to
/// zero), atomic counters. It never touches guest memory.
///
/// Threading: `start` and `stop` from the controlling thread; `flags` are set
/// here and exchanged by the controller; `faults`, `handlerNanos` and
/// `failure` may be read from any thread.
final class MinorFaultHandler: @unchecked Sendable {
    let flags: UnsafeMutablePointer<UInt8>
    let faults = Atomic<Int>(0)
    let handlerNanos = Atomic<UInt64>(0)
    /// The first error; after one the range is unregistered, so no guest thread stays blocked.
    let failure = Mutex<AgentError?>(nil)

    private let uffd: Userfaultfd
    private let arena: Arena
    private let messages: UnsafeMutablePointer<uffd_msg>
    /// A pipe whose read end the thread polls beside the userfaultfd: writing to it ends the thread.
    private let wake: Int32
    private let wakeWriter: Int32
    private let finished = DispatchSemaphore(value: 0)
    private var running = false
    private static let batch = 64

    init(uffd: Userfaultfd, arena: Arena) throws(AgentError) {
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else { throw .system("pipe: \(String(cString: strerror(errno)))") }
        for fd in pipeEnds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        wake = pipeEnds[0]
        wakeWriter = pipeEnds[1]
        self.uffd = uffd
        self.arena = arena
        flags = .allocate(capacity: arena.pageCount)
        flags.initialize(repeating: 0, count: arena.pageCount)
        messages = .allocate(capacity: Self.batch)
    }

    deinit {
        close(wake)
        close(wakeWriter)
        flags.deallocate()
        messages.deallocate()
    }

    /// Starts the thread. The thread keeps this object alive until it returns.
    func start() {
        running = true
        startWorkerThread(name: "access-sampler", finished: finished) { [self] in run() }
    }

    /// Asks the thread to end and waits for it until `deadline`; true when it ended (or never ran).
    func stop(until deadline: DispatchTime) -> Bool {
        guard running else { return true }
        var one: UInt8 = 1
        _ = write(wakeWriter, &one, 1)
        guard finished.wait(timeout: deadline) == .success else { return false }
        running = false
        return true
    }

    private func run() {
        var fds = [pollfd(fd: uffd.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        while true {
            let rc = poll(&fds, 2, -1)
            if rc < 0 {
                if errno == EINTR { continue }
                fail(.system("poll on the sampler's userfaultfd: \(String(cString: strerror(errno)))"))
                return
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLERR | POLLNVAL) != 0 {
                fail(.system("poll on the sampler's userfaultfd reported revents 0x\(String(fds[0].revents, radix: 16))"))
                return
            }
            guard drain() else { return }
        }
    }

    /// Resolves every queued fault; false after a failure.
    private func drain() -> Bool {
        while true {
            let n: Int
            do { n = try uffd.readMessages(into: messages, capacity: Self.batch) } catch {
                fail(.kernel(error))
                return false
            }
            guard n > 0 else { return true }
            let start = DispatchTime.now().uptimeNanoseconds
            for i in 0..<n where cuffd_msg_event(messages + i) == CUFFD_EVENT_PAGEFAULT {
                guard let page = arena.pageIndex(ofGuestAddress: cuffd_msg_fault_address(messages + i)) else { continue }
                atomic_store_relaxed_u8(flags + page, 1)  // before the guest runs on: the controller may look any time
                faults.add(1, ordering: .relaxed)  // likewise: counted before the guest it wakes can ask
                guard resolve(page) else { return false }
            }
            handlerNanos.add(DispatchTime.now().uptimeNanoseconds - start, ordering: .relaxed)
            if n < Self.batch { return true }
        }
    }

    /// Maps the page again, which wakes its waiters; EEXIST means another fault (or the
    /// controller) mapped it already: wake instead.
    private func resolve(_ page: Int) -> Bool {
        while true {
            let result = uffd.continue(arena.guestPage(page), length: arena.pageSize)
            if result.succeeded { return true }
            if result.alreadyPresent {
                try? uffd.wake(arena.guestPage(page), length: arena.pageSize)
                return true
            }
            if result.errno == EAGAIN { continue }
            fail(.kernel(UffdError("UFFDIO_CONTINUE of sampled page \(page)", code: result.errno)))
            return false
        }
    }

    private func fail(_ error: AgentError) {
        failure.withLock { $0 = $0 ?? error }
        try? uffd.unregister(arena.guestBase, length: arena.size)  // no guest thread stays blocked
    }
}
