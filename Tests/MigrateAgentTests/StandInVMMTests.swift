import CUffd
import Foundation
import Glibc
import MigrateAgent
import MigrateDemo
import SyntheticGuest
import Testing
import TestSupport

/// The stand-in VMM (the `stand-in-vmm` binary built next to this test bundle) against a tiny
/// page-fault handler written here: it receives the handover with `UffdHandoverReceiver`, validates
/// the regions against the image, and resolves faults with `UFFDIO_COPY` straight from the image
/// (zeros for removed ranges). This proves both pieces without the engine's handler mode. Every wait
/// is bounded: the VMM has its own `--deadline`, and a VMM still running after `vmmSeconds` is killed.
@Suite("stand-in VMM against a tiny handler", .serialized)
struct StandInVMMTests {
    static let vmmSeconds = 120.0

    @Test("one region, Firecracker 1.12+ JSON, kernel access, a balloon of 8 pages")
    func oneRegion() throws {
        let run = try StandInRun(imageBytes: 4 << 20, arguments: ["--json", "bytes", "--threads", "3", "--kernel-access", "--balloon", "8"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("stand-in-vmm: pid \(run.vmmPID), 1 regions, connected"), "\(run.output)")
        #expect(run.output.contains("all checks passed"), "\(run.output)")
        #expect(run.regions.count == 1 && run.regions[0].pageSize == 4096)
        #expect(run.peerPID == run.vmmPID)
        #expect(run.stats.removes >= 1, "the balloon's MADV_DONTNEED sent UFFD_EVENT_REMOVE")
        #expect(run.stats.zeroPages == 8, "\(run.stats)")
        #expect(run.stats.installed == 1024, "every page once: \(run.stats)")
        #expect(run.stats.errors.isEmpty, "\(run.stats.errors)")
    }

    @Test("two regions around a 1 GiB hole, the oldest JSON (no page size)")
    func gapLayout() throws {
        let run = try StandInRun(imageBytes: 2 << 20, arguments: ["--layout", "gap", "--json", "none", "--kernel-access", "--balloon", "3"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.regions.count == 2)
        if run.regions.count == 2 {
            let (low, high) = (run.regions[0], run.regions[1])
            #expect(high.baseHostVirtAddr - (low.baseHostVirtAddr + low.size) == 1 << 30, "the hole")
            #expect(low.offset == 0 && high.offset == low.size, "consecutive in the image")
            #expect(low.size + high.size == 2 << 20)
        }
        #expect(run.stats.errors.isEmpty, "\(run.stats.errors)")
    }

    @Test("page_size_kib only (Firecracker 1.7-1.11), one guest thread, socket closed after sending (< 1.12)")
    func kibOnly() throws {
        let run = try StandInRun(imageBytes: 1 << 20, arguments: ["--json", "kib", "--threads", "1", "--close-after-send"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.stats.errors.isEmpty, "\(run.stats.errors)")
    }

    @Test("2 MiB hugetlbfs pages: gap layout, kernel access, balloon (nr_hugepages raised and restored)")
    func hugePages() throws {
        guard let reservation = HugePageReservation(pages: 8) else {
            Issue.record("could not reserve 8 huge pages (/proc/sys/vm/nr_hugepages)")
            return
        }
        defer { reservation.restore() }
        let run = try StandInRun(imageBytes: 8 << 20, arguments: ["--page-size", "2097152", "--layout", "gap", "--kernel-access", "--balloon", "1"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.regions.allSatisfy { $0.pageSize == 2 << 20 })
        #expect(run.stats.zeroPages == 1, "\(run.stats)")
        #expect(run.stats.errors.isEmpty, "\(run.stats.errors)")
    }

    @Test("a handler that installs a wrong page: exit 1 and one line naming it")
    func wrongPage() throws {
        let run = try StandInRun(imageBytes: 1 << 20, arguments: ["--threads", "2"], mode: .wrongPage(3))
        #expect(run.status == 1, "\(run.output)")
        let line = run.output.split(separator: "\n").first { $0.hasPrefix("stand-in-vmm: error:") }.map(String.init) ?? ""
        #expect(line.contains("region 0, offset 0x3000 (image offset 0x3000): at byte 0x0 expected"), "\(run.output)")
    }

    @Test("a handler that ignores UFFD_EVENT_REMOVE: the ballooned pages are not zeros, exit 1")
    func balloonIgnored() throws {
        let run = try StandInRun(imageBytes: 1 << 20, arguments: ["--balloon", "4"], mode: .ignoreRemove)
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("a removed page must read zeros"), "\(run.output)")
    }

    @Test("a handler that never resolves: exit 3 at the VMM's deadline, naming the phase")
    func stuck() throws {
        let started = Date()
        let run = try StandInRun(imageBytes: 1 << 20, arguments: ["--deadline", "2", "--kernel-access"], mode: .never)
        #expect(run.status == 3, "\(run.output)")
        #expect(run.output.contains("the guest is not done after 2.0 s"), "\(run.output)")
        #expect(run.output.contains("during: kernel access"), "\(run.output)")
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test("--linger keeps the VM alive after its checks until the handler hangs up")
    func linger() throws {
        let started = Date()
        let run = try StandInRun(imageBytes: 1 << 20, arguments: ["--linger", "60"], hangUpAfterChecks: true)
        #expect(run.status == 0, "\(run.output)")
        #expect(Date().timeIntervalSince(started) < 30, "it ended at the hang-up, not after 60 s")
    }

    @Test("a larger guest: 64 MiB, 4 threads, kernel access, a 256-page balloon")
    func larger() throws {
        let run = try StandInRun(imageBytes: 64 << 20, arguments: ["--threads", "4", "--kernel-access", "--balloon", "256"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.stats.installed == 16384 && run.stats.zeroPages == 256, "\(run.stats)")
    }

    @Test("usage and setup errors exit 2 with one error line")
    func usage() throws {
        for arguments in [["--socket", "/tmp/x.sock"], ["--socket", "/tmp/x.sock", "--image", "/nonexistent"], ["--bogus"]] {
            let vmm = try AgentProcess(executable: StandInRun.binary, arguments: arguments, captureStderr: true)
            #expect(vmm.wait(seconds: 30) == 2, "\(arguments): \(vmm.capturedOutput)")
            #expect(vmm.capturedOutput.hasPrefix("stand-in-vmm: error: "), "\(vmm.capturedOutput)")
        }
    }
}

/// One run: an image, the VMM, the handover, the tiny handler until the VMM exits.
struct StandInRun {
    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stand-in-vmm").path
    }

    let status: Int32?
    let output: String
    let vmmPID: Int32
    let peerPID: Int32
    let regions: [GuestRegion]
    let stats: TinyHandler.Stats

    /// `hangUpAfterChecks`: once the VMM says its checks passed, the handler closes its connection
    /// (for `--linger`, which keeps the VM alive until then).
    init(imageBytes: Int, arguments: [String], mode: TinyHandler.Mode = .correct, hangUpAfterChecks: Bool = false) throws {
        let image = try TestImage(bytes: imageBytes)
        let path = socketPath()
        let vmm = try AgentProcess(executable: Self.binary, arguments: ["--socket", path, "--image", image.path] + arguments,
                                   captureStderr: true)
        defer { vmm.terminate() }
        let handover: UffdHandover
        do {
            handover = try UffdHandoverReceiver.receive(socketPath: path, acceptTimeoutSeconds: 30, messageTimeoutSeconds: 10)
        } catch {
            _ = vmm.wait(seconds: 5)
            throw HandoverTestError("no handover: \(error); the VMM said: \(vmm.capturedOutput)")
        }
        var connection = handover.connection
        defer { close(handover.uffd); if connection >= 0 { close(connection) } }
        try UffdHandoverReceiver.validate(handover.regions, imageBytes: UInt64(imageBytes))
        let stop = StopFlag()
        let handler = DeadlineThread("tiny-handler") { [image] in
            TinyHandler(handover: handover, image: image, mode: mode).serve(until: stop)
        }
        if hangUpAfterChecks, vmm.awaitLine(containing: "all checks passed", seconds: StandInVMMTests.vmmSeconds) != nil {
            close(connection)
            connection = -1
        }
        status = vmm.wait(seconds: StandInVMMTests.vmmSeconds)
        stop.set()
        guard let stats = handler.join(within: 10) else { throw HandoverTestError("the tiny handler did not stop") }
        self.stats = stats
        self.output = vmm.capturedOutput
        self.vmmPID = vmm.pid
        self.peerPID = handover.peerPID
        self.regions = handover.regions
    }
}

/// A page-fault handler in a few lines, like Firecracker's example `uffd` handlers: read every
/// pending message, apply removes first, then resolve each fault with one page; EAGAIN (an event is
/// unread) defers the fault to the next round, EEXIST wakes.
struct TinyHandler {
    enum Mode: Sendable {
        case correct
        /// Installs the bytes of the next image page for this image page.
        case wrongPage(Int)
        /// Resolves removed ranges with the image's bytes instead of zeros.
        case ignoreRemove
        /// Reads the faults and resolves none.
        case never
    }

    struct Stats: Sendable, CustomStringConvertible {
        var faults = 0
        var installed = 0
        var zeroPages = 0
        var removes = 0
        var deferred = 0
        var eexist = 0
        var errors: [String] = []
        var description: String {
            "faults \(faults), installed \(installed), zero pages \(zeroPages), removes \(removes), deferred \(deferred), eexist \(eexist)"
        }
    }

    let handover: UffdHandover
    let image: TestImage
    let mode: Mode

    func serve(until stop: StopFlag) -> Stats {
        var stats = Stats()
        let pageSize = handover.regions[0].pageSize
        let zeros = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 4096)
        zeros.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
        let messages = UnsafeMutablePointer<uffd_msg>.allocate(capacity: 64)
        defer { zeros.deallocate(); messages.deallocate() }
        var removed: [Range<UInt64>] = []
        var pending: [UInt64] = []
        while !stop.isSet {
            var entry = pollfd(fd: handover.uffd, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, 20)
            var count = Int(cuffd_read_msgs(handover.uffd, messages, 64))
            while count > 0 {
                for index in 0..<count {
                    // struct uffd_msg: event at byte 0; pagefault {flags, address} and remove {start, end} at byte 8.
                    let raw = UnsafeRawPointer(messages + index)
                    let first = raw.load(fromByteOffset: 8, as: UInt64.self)
                    let second = raw.load(fromByteOffset: 16, as: UInt64.self)
                    switch raw.load(as: UInt8.self) {
                    case CUFFD_EVENT_PAGEFAULT:
                        stats.faults += 1
                        pending.append(second & ~UInt64(pageSize - 1))
                    case CUFFD_EVENT_REMOVE:
                        stats.removes += 1
                        removed.append(first..<second)
                    default:
                        stats.errors.append("unexpected event \(raw.load(as: UInt8.self))")
                    }
                }
                count = count == 64 ? Int(cuffd_read_msgs(handover.uffd, messages, 64)) : 0
            }
            if case .never = mode { pending.removeAll(); continue }
            pending = pending.filter { address in
                guard let region = handover.regions.first(where: { $0.contains(address) }) else {
                    stats.errors.append("a fault at 0x\(String(address, radix: 16)) outside every region")
                    return false
                }
                let target = UnsafeMutableRawPointer(bitPattern: UInt(address))!
                var done: Int64 = 0
                let rc: Int32
                let zero: Bool
                if case .ignoreRemove = mode { zero = false } else { zero = removed.contains { $0.contains(address) } }
                if zero && pageSize == 4096 {
                    rc = cuffd_zeropage(handover.uffd, target, UInt64(pageSize), 0, &done)
                } else {
                    var offset = Int(region.imageOffset(of: address))
                    if case .wrongPage(let page) = mode, offset == page * pageSize { offset += pageSize }
                    rc = cuffd_copy(handover.uffd, target, zero ? UnsafeRawPointer(zeros) : image.bytes + offset, UInt64(pageSize), 0, &done)
                }
                switch -rc {
                case 0:
                    if zero { stats.zeroPages += 1 } else { stats.installed += 1 }
                    return false
                case EAGAIN:
                    stats.deferred += 1
                    return true
                case EEXIST:
                    stats.eexist += 1
                    _ = cuffd_wake(handover.uffd, target, UInt64(pageSize))
                    return false
                default:
                    stats.errors.append("resolving 0x\(String(address, radix: 16)): \(String(cString: strerror(-rc)))")
                    return false
                }
            }
        }
        return stats
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    var isSet: Bool { lock.withLock { stopped } }
    func set() { lock.withLock { stopped = true } }
}

/// A memory image whose every 8-byte word is non-zero and differs from page to page, mapped for the handler.
final class TestImage: @unchecked Sendable {
    let path: String
    let bytes: UnsafeRawPointer
    let count: Int

    init(bytes count: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("stand-in-image-\(UUID().uuidString)").path
        var words = [UInt64](repeating: 0, count: count / 8)
        for index in words.indices {
            var z = UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 0x1234_5678
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            words[index] = (z ^ (z >> 27)) | 1
        }
        let data = words.withUnsafeBytes { Data($0) }
        guard FileManager.default.createFile(atPath: path, contents: data) else { throw HandoverTestError("cannot write \(path)") }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        guard let mapped = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw HandoverTestError("cannot map \(path)")
        }
        bytes = UnsafeRawPointer(mapped)
        self.count = count
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: bytes), count)
        try? FileManager.default.removeItem(atPath: path)
    }
}

