import CUffd
import Foundation
import Glibc
import MigrateAgent

/// One page-fault message as the resolver read it.
struct Fault: Sendable {
    let address: UInt64
    let flags: UInt64
    /// The arena page, nil when the address is outside the arena.
    let page: Int?

    var isWrite: Bool { flags & CUFFD_PAGEFAULT_FLAG_WRITE != 0 }
}

/// The test's own event loop: a thread that polls the backend's userfaultfd
/// (with a deadline), reads fault messages in batches and hands each page
/// fault to `handler`, which resolves it through the backend. It never touches
/// guest memory. Stop it with `stop()` once the guest threads are joined.
final class FaultResolver: @unchecked Sendable {
    private let backend: any ProtectionBackend
    private let handler: @Sendable (Fault) throws -> Void
    private var stopPipe: [Int32] = [-1, -1]
    private let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var faultsRead: [Fault] = []
    private var problemsSeen: [String] = []

    /// Starts the resolver thread; it gives up by itself after `lifetime` seconds.
    init(backend: any ProtectionBackend, lifetime: Double = 30, handler: @escaping @Sendable (Fault) throws -> Void) {
        self.backend = backend
        self.handler = handler
        precondition(pipe(&stopPipe) == 0, "pipe: \(String(cString: strerror(errno)))")
        let deadline = DispatchTime.now() + lifetime
        let thread = Thread { [self] in
            run(until: deadline)
            finished.signal()
        }
        thread.name = "fault-resolver"
        thread.start()
    }

    deinit {
        close(stopPipe[0])
        close(stopPipe[1])
    }

    /// Every page fault read so far, in order.
    var faults: [Fault] { lock.withLock { faultsRead } }
    /// What went wrong on the resolver thread (read errors, handler errors, other events).
    var problems: [String] { lock.withLock { problemsSeen } }

    /// Asks the thread to end and waits for it; false when it did not end in time.
    @discardableResult
    func stop(within seconds: Double = 5) -> Bool {
        var byte: UInt8 = 1
        _ = write(stopPipe[1], &byte, 1)
        return finished.wait(timeout: .now() + seconds) == .success
    }

    private func problem(_ text: String) { lock.withLock { problemsSeen.append(text) } }

    private func run(until deadline: DispatchTime) {
        let capacity = 16
        let messages = UnsafeMutablePointer<uffd_msg>.allocate(capacity: capacity)
        defer { messages.deallocate() }
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline.uptimeNanoseconds else {
                return problem("resolver gave up: nobody stopped it before its deadline")
            }
            let waitMillis = Int32(min(1_000, (deadline.uptimeNanoseconds - now) / 1_000_000 + 1))
            var fds = [pollfd(fd: backend.uffd.fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, waitMillis)
            if rc < 0 {
                if errno == EINTR { continue }
                return problem("poll: \(String(cString: strerror(errno)))")
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                return problem("poll on the userfaultfd reported revents \(fds[0].revents)")
            }
            guard fds[0].revents & Int16(POLLIN) != 0 else { continue }
            let count: Int
            do { count = try backend.uffd.readMessages(into: messages, capacity: capacity) } catch {
                return problem("\(error)")
            }
            for i in 0..<count {
                let message = messages + i
                guard cuffd_msg_event(message) == CUFFD_EVENT_PAGEFAULT else {
                    problem("unexpected userfaultfd event \(cuffd_msg_event(message))")
                    continue
                }
                let address = cuffd_msg_fault_address(message)
                let fault = Fault(address: address, flags: cuffd_msg_fault_flags(message),
                                  page: backend.arena.pageIndex(ofGuestAddress: address))
                lock.withLock { faultsRead.append(fault) }
                do { try handler(fault) } catch {
                    problem("resolving a fault at \(String(address, radix: 16)) (page \(fault.page.map(String.init) ?? "outside")): \(error)")
                }
            }
        }
    }
}

/// Waits on the test's own thread (no guest memory touched) for one page-fault
/// message, with a deadline; nil when none came.
func waitForFault(on backend: any ProtectionBackend, within seconds: Double = 10) -> Fault? {
    let deadline = DispatchTime.now() + seconds
    let messages = UnsafeMutablePointer<uffd_msg>.allocate(capacity: 1)
    defer { messages.deallocate() }
    while DispatchTime.now() < deadline {
        var fds = pollfd(fd: backend.uffd.fd, events: Int16(POLLIN), revents: 0)
        let left = (deadline.uptimeNanoseconds &- DispatchTime.now().uptimeNanoseconds) / 1_000_000 + 1
        let rc = poll(&fds, 1, Int32(min(left, 1_000)))
        if rc < 0 && errno != EINTR { return nil }
        guard rc > 0, fds.revents & Int16(POLLIN) != 0 else { continue }
        guard let count = try? backend.uffd.readMessages(into: messages, capacity: 1), count == 1,
              cuffd_msg_event(messages) == CUFFD_EVENT_PAGEFAULT else { continue }
        let address = cuffd_msg_fault_address(messages)
        return Fault(address: address, flags: cuffd_msg_fault_flags(messages),
                     page: backend.arena.pageIndex(ofGuestAddress: address))
    }
    return nil
}

/// Whether a fault message is pending right now (no waiting).
func faultPending(on backend: any ProtectionBackend) -> Bool {
    var fds = pollfd(fd: backend.uffd.fd, events: Int16(POLLIN), revents: 0)
    return poll(&fds, 1, 0) > 0 && fds.revents & Int16(POLLIN) != 0
}
