import Foundation
import Glibc
import MigrateAgent
import SyntheticGuest
import Testing

@Suite("VMM handover: region JSON")
struct RegionJSONTests {
    private func parse(_ text: String) throws(AgentError) -> [GuestRegion] {
        try UffdHandoverReceiver.parseRegions(Array(text.utf8))
    }

    @Test("Firecracker < 1.7: no page size means 4096")
    func noPageSize() throws {
        let regions = try parse(#"[{"base_host_virt_addr":139716571508736,"size":8192,"offset":0}]"#)
        #expect(regions == [GuestRegion(baseHostVirtAddr: 0x7F12_4C9D_3000, size: 8192, offset: 0, pageSize: 4096)])
    }

    @Test("Firecracker 1.7-1.11: page_size_kib alone, which holds bytes")
    func kibOnly() throws {
        let regions = try parse(#"[{"base_host_virt_addr":2097152,"size":4194304,"offset":0,"page_size_kib":2097152}]"#)
        #expect(regions.map(\.pageSize) == [2_097_152])
    }

    @Test("Firecracker 1.12+: both keys, equal; two regions; blanks around the text")
    func bothKeys() throws {
        let text = """
             [{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"page_size_kib":4096},
              {"base_host_virt_addr":1073745920,"size":8192,"offset":4096,"page_size":4096,"page_size_kib":4096}]\n
            """
        let regions = try parse(text)
        #expect(regions == [
            GuestRegion(baseHostVirtAddr: 4096, size: 4096, offset: 0, pageSize: 4096),
            GuestRegion(baseHostVirtAddr: 1_073_745_920, size: 8192, offset: 4096, pageSize: 4096),
        ])
    }

    @Test("page_size alone (Firecracker 2.0) and the largest u64 values parse exactly")
    func pageSizeOnlyAndLargeValues() throws {
        let regions = try parse(#"[{"base_host_virt_addr":18446744073709547520,"size":18446744073709547520,"offset":9007199254740993,"page_size":4096}]"#)
        #expect(regions == [GuestRegion(baseHostVirtAddr: UInt64.max - 4095, size: UInt64.max - 4095, offset: 9_007_199_254_740_993, pageSize: 4096)])
    }

    @Test("unknown keys are ignored, whatever their type")
    func unknownKeys() throws {
        let regions = try parse(#"[{"slot":3,"base_host_virt_addr":4096,"size":4096,"offset":0,"extra":{"a":[1,null,"x"]},"page_size":4096,"huge":true}]"#)
        #expect(regions.count == 1)
        let escaped = try parse(#"[{"name":"a\"b\\ \u00e9\ud83d\ude00\/\n","base_host_virt_addr":4096,"size":4096,"offset":0,"n":-1.5e-3}]"#)
        #expect(escaped.count == 1)
        #expect(try parse("[]") == [])
    }

    @Test("malformed JSON, or not an array of objects", arguments: [
        (#"[{"base_host_virt_addr":4096,"size":"#, "malformed JSON"),
        ("", "malformed JSON"),
        ("not json", "malformed JSON: expected a value: 'n' at byte 0"),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0}] ]"#, "unexpected text after the JSON value: ']' at byte 54"),
        (#"[{"base_host_virt_addr":04096,"size":4096,"offset":0}]"#, "a number with a leading zero"),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0,}]"#, "expected a key: '}'"),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0,"x":"\q"}]"#, "an invalid escape"),
        (#"{"base_host_virt_addr":4096,"size":4096,"offset":0}"#, "not a JSON array"),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0}, 7]"#, "region 1 is not an object"),
    ])
    func malformed(text: String, expected: String) {
        let message = invalidArgumentMessage { _ = try parse(text) }
        #expect(message?.contains(expected) == true, "\(message ?? "nil")")
    }

    @Test("bad values name the region index and the field", arguments: [
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0},{"base_host_virt_addr":8192,"offset":4096}]"#,
         #"region 1: "size" is missing"#),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":-4096}]"#, #"region 0: "offset" is not an unsigned 64-bit integer"#),
        (#"[{"base_host_virt_addr":"4096","size":4096,"offset":0}]"#, #"region 0: "base_host_virt_addr" is not an unsigned 64-bit integer"#),
        (#"[{"base_host_virt_addr":4096,"size":4096.5,"offset":0}]"#, #"region 0: "size" is not an unsigned 64-bit integer"#),
        (#"[{"base_host_virt_addr":4096,"size":18446744073709551616,"offset":0}]"#, #"region 0: "size" is not an unsigned 64-bit integer"#),
        (#"[{"base_host_virt_addr":4096,"size":null,"offset":0}]"#, #"region 0: "size" is null"#),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"page_size_kib":2097152}]"#,
         #"region 0: "page_size" 4096 and "page_size_kib" 2097152 disagree"#),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size_kib":4}]"#, #"region 0: "page_size_kib" 4 is not a page size"#),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0},{"base_host_virt_addr":8192,"size":4096,"offset":4096,"page_size":12288}]"#,
         #"region 1: "page_size" 12288 is not a page size"#),
        (#"[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":0}]"#, #"region 0: "page_size" 0 is not a page size"#),
    ])
    func badValues(text: String, expected: String) {
        let message = invalidArgumentMessage { _ = try parse(text) }
        #expect(message?.contains(expected) == true, "\(message ?? "nil")")
    }
}

@Suite("VMM handover: regions against the image")
struct RegionValidationTests {
    static let page: UInt64 = 4096
    static let gib: UInt64 = 1 << 30

    /// x86-like: 3 pages below a 1 GiB hole, 1 above, consecutive in the image.
    static let gapLayout = [
        GuestRegion(baseHostVirtAddr: 0x7F00_0000_0000, size: 3 * page, offset: 0, pageSize: 4096),
        GuestRegion(baseHostVirtAddr: 0x7F00_0000_0000 + 3 * page + gib, size: page, offset: 3 * page, pageSize: 4096),
    ]

    @Test("a layout that fits passes, whatever the order of its regions")
    func fits() throws {
        try UffdHandoverReceiver.validate(Self.gapLayout, imageBytes: 4 * Self.page)
        try UffdHandoverReceiver.validate(Self.gapLayout.reversed(), imageBytes: 4 * Self.page)
        let huge = GuestRegion(baseHostVirtAddr: 0x7F00_0020_0000, size: 8 << 20, offset: 0, pageSize: 2 << 20)
        try UffdHandoverReceiver.validate([huge], imageBytes: 8 << 20)
    }

    /// (regions, image bytes, words the message must contain)
    static let misfitCases: [([GuestRegion], UInt64, [String])] = [
        ([GuestRegion](), 4096, ["no regions"]),
        ([region(0x1000, 4096, 0), region(0x8000_1000, 4096, 4096, pageSize: 2 << 20)], 8192,
         ["region 1 at 0x80001000", "page size 2097152 differs from region 0's 4096"]),
        ([region(0x1000, 0, 0)], 4096, ["region 0 at 0x1000", "size is 0"]),
        ([region(0x1800, 4096, 0)], 4096, ["region 0 at 0x1800", "address 0x1800 is not a multiple of the page size 4096"]),
        ([region(0x1000, 6144, 0)], 6144, ["region 0 at 0x1000", "size 0x1800 is not a multiple"]),
        ([region(0x1000, 4096, 0), region(0x9000, 4096, 2048)], 8192, ["region 1 at 0x9000", "offset 0x800 is not a multiple"]),
        ([region(0x20_0000, 2 << 20, 0, pageSize: 2 << 20), region(0x80_1000, 2 << 20, 2 << 20, pageSize: 2 << 20)], 4 << 20,
         ["region 1 at 0x801000", "address 0x801000 is not a multiple of the page size 2097152"]),
        ([region(0xFFFF_FFFF_FFFF_F000, 8192, 0)], 8192, ["region 0 at 0xfffffffffffff000", "past the end of the address space"]),
        ([region(0x1000, 4096, 0), region(0x9000, 4096, 8192)], 8192, ["region 1 at 0x9000", "lies outside the image of 8192 bytes"]),
        ([region(0x1000, 8192, 0), region(0x2000, 4096, 8192)], 12288, ["region 1 at 0x2000 overlaps region 0 at 0x1000 in the address space"]),
        ([region(0x1000, 8192, 0), region(0x9000, 4096, 4096)], 12288, ["region 1 at 0x9000 overlaps region 0 at 0x1000 in the image"]),
        ([region(0x1000, 4096, 0)], 8192, ["1 region(s) hold 4096 bytes, the image 8192"]),
    ]

    @Test("each misfit names the region and what is wrong", arguments: misfitCases)
    func misfits(regions: [GuestRegion], imageBytes: UInt64, expected: [String]) {
        let message = invalidArgumentMessage { try UffdHandoverReceiver.validate(regions, imageBytes: imageBytes) }
        for words in expected { #expect(message?.contains(words) == true, "\(message ?? "nil") lacks \(words)") }
    }
}

private func region(_ base: UInt64, _ size: UInt64, _ offset: UInt64, pageSize: Int = 4096) -> GuestRegion {
    GuestRegion(baseHostVirtAddr: base, size: size, offset: offset, pageSize: pageSize)
}

@Suite("VMM handover: the Unix socket", .serialized)
struct HandoverSocketTests {
    static let json = Array(#"[{"base_host_virt_addr":4096,"size":8192,"offset":0,"page_size":4096,"page_size_kib":4096}]"#.utf8)

    @Test("JSON + a pipe's descriptor: regions, the same open file, our pid, the socket file gone, the connection open")
    func roundTrip() throws {
        let path = socketPath()
        let (original, writeEnd) = try makePipe()
        defer { close(original); close(writeEnd) }
        let vmm = FakeVMM(path: path) { socket in try sendMessage(socket, Self.json, fds: [original]) }
        let handover = try UffdHandoverReceiver.receive(socketPath: path, acceptTimeoutSeconds: 10, messageTimeoutSeconds: 5)
        defer { close(handover.uffd); close(handover.connection) }
        let vmmSocket = try vmm.finish()
        defer { close(vmmSocket) }
        #expect(handover.regions == [GuestRegion(baseHostVirtAddr: 4096, size: 8192, offset: 0, pageSize: 4096)])
        #expect(handover.peerPID == getpid())
        #expect(handover.uffd != original)
        #expect(!FileManager.default.fileExists(atPath: path))
        // The received descriptor is the same pipe: what we write into it reads back through it.
        #expect(write(writeEnd, "u", 1) == 1)
        var sent: UInt8 = 0
        #expect(read(handover.uffd, &sent, 1) == 1 && sent == UInt8(ascii: "u"))
        #expect(fcntl(handover.uffd, F_GETFL) & O_NONBLOCK != 0, "made non-blocking")
        #expect(fcntl(handover.uffd, F_GETFD) & FD_CLOEXEC != 0)
        // The connection stays usable: what the VMM writes later arrives.
        #expect(write(vmmSocket, "x", 1) == 1)
        var byte: UInt8 = 0
        #expect(read(handover.connection, &byte, 1) == 1 && byte == UInt8(ascii: "x"))
    }

    @Test("a real userfaultfd; the text split over two sends; a stale socket file replaced")
    func realUffdSplitText() throws {
        let path = socketPath()
        // A stale socket file: bound, then its socket closed (no one listens).
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        withAddress(path) { address, length in #expect(bind(stale, address, length) == 0) }
        close(stale)
        #expect(FileManager.default.fileExists(atPath: path))
        let uffd = try Userfaultfd()
        let vmm = FakeVMM(path: path) { socket in
            try sendMessage(socket, Array(Self.json[..<20]), fds: [uffd.fd])
            usleep(200_000)
            try sendMessage(socket, Array(Self.json[20...]), fds: [])
        }
        let handover = try UffdHandoverReceiver.receive(socketPath: path, acceptTimeoutSeconds: 10, messageTimeoutSeconds: 5)
        defer { close(handover.uffd); close(handover.connection) }
        close(try vmm.finish())
        #expect(handover.regions.count == 1)
        let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(handover.uffd)")) ?? ""
        #expect(link.contains("userfaultfd"), "\(link)")
    }

    @Test("a VMM that closes right after sending (Firecracker < 1.12) is fine")
    func closeAfterSend() throws {
        let path = socketPath()
        let (original, writeEnd) = try makePipe()
        defer { close(original); close(writeEnd) }
        let receiver = receiveInBackground(path, messageTimeoutSeconds: 5)
        let vmm = try connectWithRetry(path, seconds: 10)
        try sendMessage(vmm, Self.json, fds: [original])
        close(vmm)
        let handover = try #require(receiver.join(within: 15)).get()
        close(handover.uffd)
        close(handover.connection)
        #expect(handover.regions.count == 1)
    }

    @Test("what is missing is named, within the message timeout", arguments: [
        (Missing.fd, "sent its regions (91 bytes) but no userfaultfd"),
        (.text, "sent its userfaultfd but no region JSON"),
        (.everything, "connected but sent neither its regions nor its userfaultfd"),
    ])
    func missing(what: Missing, expected: String) throws {
        let path = socketPath()
        let (original, writeEnd) = try makePipe()
        defer { close(original); close(writeEnd) }
        let vmm = FakeVMM(path: path) { socket in
            switch what {
            case .fd: try sendMessage(socket, Self.json, fds: [])
            case .text: try sendMessage(socket, Array(" ".utf8), fds: [original])  // a stream socket carries an fd only with a byte
            case .everything: break
            }
        }
        let started = Date()
        let error = agentError { _ = try UffdHandoverReceiver.receive(socketPath: path, acceptTimeoutSeconds: 10, messageTimeoutSeconds: 0.5) }
        close(try vmm.finish())
        #expect(Date().timeIntervalSince(started) < 5)
        guard case .peer(let message)? = error else { Issue.record("expected .peer, got \(String(describing: error))"); return }
        #expect(message.contains(expected), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    enum Missing: Sendable { case fd, text, everything }

    @Test("no VMM connects: a .peer error after the accept timeout, the socket file removed")
    func noConnection() {
        let path = socketPath()
        let error = agentError { _ = try UffdHandoverReceiver.receive(socketPath: path, acceptTimeoutSeconds: 0.3, messageTimeoutSeconds: 1) }
        guard case .peer(let message)? = error else { Issue.record("expected .peer, got \(String(describing: error))"); return }
        #expect(message.contains("no VMM connected to \(path) within 0.3 s"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a hang-up, two descriptors, malformed text: each refused at once")
    func refusals() throws {
        let (original, writeEnd) = try makePipe()
        defer { close(original); close(writeEnd) }
        let cases: [(String, ([UInt8], [Int32])?)] = [
            ("closed the connection before sending its regions and its userfaultfd", nil),
            ("sent 2 file descriptors", (Self.json, [original, original])),
            (#"region 0: "size" is missing"#, (Array(#"[{"base_host_virt_addr":4096,"offset":0}]"#.utf8), [original])),
        ]
        for (expected, send) in cases {
            let path = socketPath()
            let receiver = receiveInBackground(path, messageTimeoutSeconds: 10)
            let started = Date()
            let vmm = try connectWithRetry(path, seconds: 10)
            if let send { try sendMessage(vmm, send.0, fds: send.1) } else { close(vmm) }  // nil: the hang-up
            let result = try #require(receiver.join(within: 15))
            if send != nil { close(vmm) }
            #expect(Date().timeIntervalSince(started) < 5, "refused at once, not at the timeout")
            guard case .failure(let error) = result else { Issue.record("expected a refusal: \(expected)"); continue }
            #expect("\(error)".contains(expected), "\(error) lacks \(expected)")
        }
    }

    @Test("a file that is not a socket is refused and left alone")
    func notASocket() throws {
        let path = socketPath()
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let message = invalidArgumentMessage { _ = try UffdHandoverReceiver.receive(socketPath: path, acceptTimeoutSeconds: 0.2, messageTimeoutSeconds: 0.2) }
        #expect(message?.contains("exists and is not a socket") == true, "\(message ?? "nil")")
        #expect(FileManager.default.contents(atPath: path) == Data("keep".utf8))
    }
}

// MARK: - Test helpers: a fake VMM end of the socket

/// A fresh socket path in the temporary directory (short enough for sun_path).
func socketPath() -> String {
    "/tmp/uffd-test-\(getpid())-\(UUID().uuidString.prefix(8)).sock"
}

/// The VMM side on a thread of its own: connects (retrying until the receiver listens, at most
/// 10 s), runs `send`, and hands back the connected socket, which the caller closes.
final class FakeVMM: Sendable {
    private let thread: DeadlineThread<Result<Int32, HandoverTestError>>

    init(path: String, send: @escaping @Sendable (Int32) throws -> Void) {
        thread = DeadlineThread("fake-vmm") {
            do {
                let socket = try connectWithRetry(path, seconds: 10)
                do { try send(socket) } catch {
                    close(socket)
                    throw error
                }
                return .success(socket)
            } catch {
                return .failure(HandoverTestError("the fake VMM failed: \(error)"))
            }
        }
    }

    /// The connected socket, once `send` ran (at most 15 s).
    func finish() throws(HandoverTestError) -> Int32 {
        guard let result = thread.join(within: 15) else { throw HandoverTestError("the fake VMM is stuck") }
        return try result.get()
    }
}

struct HandoverTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `receive` on a thread of its own (so that the test thread can play the VMM), with a 10 s accept timeout.
func receiveInBackground(_ path: String, messageTimeoutSeconds: Double) -> DeadlineThread<Result<UffdHandover, AgentError>> {
    DeadlineThread("handover-receiver") {
        Result { () throws(AgentError) -> UffdHandover in
            try UffdHandoverReceiver.receive(socketPath: path, acceptTimeoutSeconds: 10, messageTimeoutSeconds: messageTimeoutSeconds)
        }
    }
}

/// A pipe: its read end is the descriptor the fake VMM hands over.
func makePipe() throws(HandoverTestError) -> (read: Int32, write: Int32) {
    var ends: [Int32] = [0, 0]
    guard pipe(&ends) == 0 else { throw HandoverTestError("pipe failed (errno \(errno))") }
    return (ends[0], ends[1])
}

func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> Void) rethrows {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
    try withUnsafePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
    }
}

func connectWithRetry(_ path: String, seconds: Double) throws(HandoverTestError) -> Int32 {
    let deadline = Date(timeIntervalSinceNow: seconds)
    while Date() < deadline {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var connected = false
        withAddress(path) { address, length in connected = connect(fd, address, length) == 0 }
        if connected { return fd }
        close(fd)
        usleep(10_000)
    }
    throw HandoverTestError("could not connect to \(path) within \(seconds) s")
}

/// One sendmsg: `bytes` with `fds` as SCM_RIGHTS (none: no control message).
func sendMessage(_ socket: Int32, _ bytes: [UInt8], fds: [Int32]) throws(HandoverTestError) {
    let headerBytes = MemoryLayout<cmsghdr>.size
    let controlBytes = fds.isEmpty ? 0 : headerBytes + ((fds.count * 4 + 7) & ~7)
    let control = UnsafeMutableRawBufferPointer.allocate(byteCount: max(controlBytes, 8), alignment: 8)
    defer { control.deallocate() }
    control.initializeMemory(as: UInt8.self, repeating: 0)
    if !fds.isEmpty {
        var header = cmsghdr()
        header.cmsg_len = headerBytes + fds.count * 4
        header.cmsg_level = SOL_SOCKET
        header.cmsg_type = Int32(SCM_RIGHTS)
        control.storeBytes(of: header, as: cmsghdr.self)
        for (slot, fd) in fds.enumerated() { control.storeBytes(of: fd, toByteOffset: headerBytes + slot * 4, as: Int32.self) }
    }
    var payload = bytes
    let sent = payload.withUnsafeMutableBytes { buffer -> Int in
        var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var message = msghdr()
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            message.msg_control = fds.isEmpty ? nil : control.baseAddress
            message.msg_controllen = controlBytes
            return sendmsg(socket, &message, Int32(MSG_NOSIGNAL))
        }
    }
    guard sent == bytes.count else { throw HandoverTestError("sendmsg sent \(sent) of \(bytes.count) bytes (errno \(errno))") }
}

/// The AgentError `body` throws, or nil (and an issue) when it throws nothing.
func agentError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> AgentError? {
    do {
        try body()
        Issue.record("expected an AgentError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as AgentError {
        return error
    } catch {
        Issue.record("expected an AgentError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
