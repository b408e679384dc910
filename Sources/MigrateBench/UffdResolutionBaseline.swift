import CGuestAccess
import CUffd
import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import SyntheticGuest

/// Raw userfaultfd resolution without a network: a handler thread polls the
/// userfaultfd and resolves each fault from local memory — MISSING with
/// `UFFDIO_COPY`, or MINOR (the page already in the memfd's page cache) with
/// `UFFDIO_CONTINUE` — while a faulting thread times each first access. The
/// arena is a memfd like the agent's, registered through the same backends.
/// Every page is verified after it was resolved.
enum UffdResolutionBaseline {
    enum Kind: String, Sendable {
        case missingCopy = "uffd-missing"
        case minorContinue = "uffd-minor"

        var what: String {
            switch self {
            case .missingCopy: "MISSING fault resolved by a handler thread with UFFDIO_COPY from local memory"
            case .minorContinue: "MINOR fault resolved by a handler thread with UFFDIO_CONTINUE"
            }
        }
    }

    static func measure(_ kind: Kind, pages: Int, placement: Placement, seed: UInt64) throws(AgentError) -> MeasuredLatency {
        let rig = try Rig(kind: kind, pages: pages)
        defer { rig.close() }
        let order = AccessPattern.random.order(pages: Array(0..<pages), seed: seed)
        let (handlerCPU, faultingCPU) = switch placement {
        case .unpinned: (-1, -1)
        case .sameCPU: (0, 0)
        case .crossCPU: (1, 0)
        }
        let handler = DeadlineThread("bench-uffd-handler") { rig.handle(pinnedTo: handlerCPU) }
        let faulting = DeadlineThread("bench-uffd-guest") { rig.touch(order, pinnedTo: faultingCPU) }
        guard let samples = faulting.join(within: 120) else {
            rig.release()  // wakes the faulting thread: its fault retries without userfaultfd
            rig.stop()
            _ = faulting.join(within: 5)
            throw .system("\(kind.rawValue) baseline: the faulting thread was still blocked after 120 s; "
                + "handler: \(handler.join(within: 5) ?? "did not stop")")
        }
        rig.stop()
        let problem = handler.join(within: 10) ?? "the handler thread did not stop"
        if !problem.isEmpty { throw .system("\(kind.rawValue) baseline: \(problem)") }
        if let bad = rig.verify() { throw .system("\(kind.rawValue) baseline: \(bad)") }
        return MeasuredLatency(id: kind.rawValue, what: kind.what, placement: placement,
                               histogram: samples.histogram(droppingFirst: FirstTouchBaseline.warmup(pages)),
                               sameCPUFraction: rig.sameCPUFraction)
    }

    /// The arena, its backend, the bytes to copy from and the stop pipe.
    /// Threading: the handler thread calls `handle`, the faulting thread
    /// `touch`; each writes only its own per-page CPU array. The controlling
    /// thread calls the rest after joining them (`release` and `stop` also before).
    private final class Rig: @unchecked Sendable {
        let kind: Kind
        let arena: Arena
        let backend: any ProtectionBackend
        let source: UnsafeMutableRawPointer?
        let handlerCPUs: UnsafeMutablePointer<Int32>
        let faultingCPUs: UnsafeMutablePointer<Int32>
        var stopPipe: [Int32] = [-1, -1]

        init(kind: Kind, pages: Int) throws(AgentError) {
            self.kind = kind
            arena = try Arena(size: pages * Arena.systemPageSize, name: "bench-\(kind.rawValue)")
            let pageSize = arena.pageSize
            switch kind {
            case .missingCopy:
                let bytes = UnsafeMutableRawPointer.allocate(byteCount: arena.size, alignment: pageSize)
                for page in 0..<pages { PageContent.fill(bytes + page * pageSize, index: page, version: 1, pageSize: pageSize) }
                source = bytes
                backend = try makeBackend(.missing, arena: arena)
            case .minorContinue:
                // Written through the io view: in the page cache, not mapped in the guest view.
                for page in 0..<pages { PageContent.fill(arena.ioPage(page), index: page, version: 1, pageSize: pageSize) }
                source = nil
                backend = try makeBackend(.minor, arena: arena)
            }
            handlerCPUs = .allocate(capacity: pages)
            handlerCPUs.initialize(repeating: -1, count: pages)
            faultingCPUs = .allocate(capacity: pages)
            faultingCPUs.initialize(repeating: -2, count: pages)
            guard pipe(&stopPipe) == 0 else { throw .system("pipe: \(String(cString: strerror(errno)))") }
        }

        deinit {
            source?.deallocate()
            handlerCPUs.deallocate()
            faultingCPUs.deallocate()
        }

        /// The faulting side: one timed first read per page.
        func touch(_ order: [Int], pinnedTo cpu: Int) -> LatencySamples {
            if cpu >= 0 { CPUPlacement.pin(to: cpu) }
            let samples = LatencySamples(capacity: order.count)
            for page in order {
                let address = arena.guestPage(page)
                let start = EventLoop.nowNanos()
                _ = guest_read_u64(address)
                samples.append(EventLoop.nowNanos() - start)
                faultingCPUs[page] = CPUPlacement.current()
            }
            return samples
        }

        /// The handler side: poll, read a batch of fault messages, resolve each.
        /// Returns "" or what went wrong; on a failure it releases the range
        /// first, so the faulting thread is not left blocked.
        func handle(pinnedTo cpu: Int) -> String {
            if cpu >= 0 { CPUPlacement.pin(to: cpu) }
            let problem = resolveUntilStopped()
            if !problem.isEmpty { release() }
            return problem
        }

        private func resolveUntilStopped() -> String {
            let capacity = 16
            let messages = UnsafeMutablePointer<uffd_msg>.allocate(capacity: capacity)
            defer { messages.deallocate() }
            let uffd = backend.uffd
            let pageSize = arena.pageSize
            while true {
                var fds = [pollfd(fd: uffd.fd, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0)]
                let rc = poll(&fds, 2, 1_000)
                if rc < 0 {
                    if errno == EINTR { continue }
                    return "poll: \(String(cString: strerror(errno)))"
                }
                if fds[1].revents != 0 { return "" }
                guard fds[0].revents & Int16(POLLIN) != 0 else { continue }
                let count: Int
                do { count = try uffd.readMessages(into: messages, capacity: capacity) } catch { return "\(error)" }
                for i in 0..<count where cuffd_msg_event(messages + i) == CUFFD_EVENT_PAGEFAULT {
                    guard let page = arena.pageIndex(ofGuestAddress: cuffd_msg_fault_address(messages + i)) else { continue }
                    handlerCPUs[page] = CPUPlacement.current()
                    let result = switch kind {
                    case .missingCopy: uffd.copy(to: arena.guestPage(page), from: source! + page * pageSize, length: pageSize)
                    case .minorContinue: uffd.continue(arena.guestPage(page), length: pageSize)
                    }
                    if !result.succeeded && !result.alreadyPresent {
                        return UffdError(kind == .missingCopy ? "UFFDIO_COPY" : "UFFDIO_CONTINUE", code: result.errno).description
                    }
                }
            }
        }

        /// Each page holds its expected contents (read through the guest view, now mapped).
        func verify() -> String? {
            for page in 0..<arena.pageCount
            where !PageContent.verify(arena.guestPage(page), index: page, version: 1, pageSize: arena.pageSize) {
                return "page \(page) holds " + PageContent.describe(arena.guestPage(page), pageSize: arena.pageSize)
            }
            return nil
        }

        var sameCPUFraction: Double? {
            var seen = 0
            var same = 0
            for page in 0..<arena.pageCount where handlerCPUs[page] >= 0 && faultingCPUs[page] >= 0 {
                seen += 1
                if handlerCPUs[page] == faultingCPUs[page] { same += 1 }
            }
            return seen == 0 ? nil : Double(same) / Double(seen)
        }

        func release() { backend.release() }

        func stop() {
            var byte: UInt8 = 1
            _ = write(stopPipe[1], &byte, 1)
        }

        /// Unregisters and closes the userfaultfd while the mapping still exists, then the pipe.
        func close() {
            backend.release()
            backend.uffd.close()
            Glibc.close(stopPipe[0])
            Glibc.close(stopPipe[1])
        }
    }
}
