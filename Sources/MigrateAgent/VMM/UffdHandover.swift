import Dispatch
import FoundationEssentials
import Glibc

/// What a VMM hands over on the Unix socket: its regions, its userfaultfd, and who it is.
/// The two descriptors belong to the receiver from now on (it closes them).
public struct UffdHandover: Sendable {
    public let regions: [GuestRegion]
    /// The VMM's userfaultfd (already UFFDIO_API'd and registered MISSING by the VMM; non-blocking:
    /// `receive` sets `O_NONBLOCK` if the VMM did not; close-on-exec here).
    public let uffd: Int32
    /// The VMM's pid from SO_PEERCRED (as it was when the VMM connected).
    public let peerPID: Int32
    /// The accepted connection: kept open for the whole migration (the VMM never closes it; never wait for EOF).
    /// Blocking, close-on-exec. A hang-up on it (POLLHUP/EOF) means the VMM is gone.
    public let connection: Int32

    public init(regions: [GuestRegion], uffd: Int32, peerPID: Int32, connection: Int32) {
        self.regions = regions
        self.uffd = uffd
        self.peerPID = peerPID
        self.connection = connection
    }
}

/// The handler side of Firecracker's userfaultfd handshake (snapshot load with
/// `mem_backend: {backend_type: "Uffd", backend_path}`): the VMM connects to a Unix
/// socket and sends ONE message, the JSON text of its regions with its userfaultfd
/// as the one `SCM_RIGHTS` descriptor, and keeps the connection open.
public enum UffdHandoverReceiver {
    /// The receive buffer for one read of the region text (Firecracker's own example handler uses 1 KiB,
    /// which a VM with many memory slots outgrows).
    public static let receiveBufferBytes = 64 * 1024
    /// The region text is refused beyond this size (a few hundred bytes per region).
    public static let maximumTextBytes = 1 << 20

    /// Binds a Unix stream socket at `socketPath` (a stale socket file there is removed; any other existing file is refused),
    /// accepts one connection within `acceptTimeoutSeconds`, and receives ONE message: the JSON text of the regions with
    /// exactly one fd by SCM_RIGHTS, into a buffer of at least 64 KiB. If the fd or the text is missing, it retries reading
    /// for up to `messageTimeoutSeconds`, then throws a clear AgentError naming what was missing. Closes the listening socket
    /// (and removes the socket file) before returning.
    ///
    /// The text is complete once its last non-blank byte is `]` (the VMM writes one JSON array, no framing); a text that
    /// never completes is parsed at the deadline, so the error says what is wrong with it. Errors: `.invalidArgument` for
    /// the path and for region text that does not parse, `.peer` for a VMM that does not connect, sends too little or
    /// hangs up, `.system` for a failed system call. On an error every descriptor is closed.
    public static func receive(socketPath: String, acceptTimeoutSeconds: Double, messageTimeoutSeconds: Double) throws(AgentError) -> UffdHandover {
        let listener = try UnixListener(path: socketPath)
        defer { listener.close() }
        let connection = try listener.acceptOne(timeoutSeconds: acceptTimeoutSeconds)
        do throws(AgentError) {
            let pid = try peerPID(of: connection)
            let (text, uffd) = try receiveMessage(on: connection, timeoutSeconds: messageTimeoutSeconds)
            do throws(AgentError) {
                let regions = try parseRegions(text)
                try makeNonBlocking(uffd)
                return UffdHandover(regions: regions, uffd: uffd, peerPID: pid, connection: connection)
            } catch {
                Glibc.close(uffd)
                throw error
            }
        } catch {
            Glibc.close(connection)
            throw error
        }
    }

    // MARK: - The region JSON

    /// Parses Firecracker's region JSON: an array of {"base_host_virt_addr": u64, "size": u64, "offset": u64,
    /// "page_size": u64, "page_size_kib": u64}. Accept all three generations: no page size at all (4096), only
    /// `page_size_kib` (which despite its name holds bytes), both (they must agree). Ignore unknown keys. Errors name the
    /// region index and the field.
    ///
    /// A page size must be a power of two from 4096 to 1 GiB. An empty array parses (to no regions); `validate`
    /// refuses it. Errors are `.invalidArgument`.
    public static func parseRegions(_ json: [UInt8]) throws(AgentError) -> [GuestRegion] {
        let prefix = "the VMM's region JSON: "
        let document: JSONValue
        do { document = try JSONValue.parse(json) } catch { throw .invalidArgument(prefix + "malformed JSON: \(error)") }
        guard case .array(let elements) = document else {
            throw .invalidArgument(prefix + "the text is not a JSON array of regions but \(document.kind)")
        }
        var regions: [GuestRegion] = []
        regions.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard case .object = element else { throw .invalidArgument(prefix + "region \(index) is not an object but \(element.kind)") }
            /// A u64 field as serde_json reads one: digits only, no sign, fraction or exponent, at most UInt64.max.
            func field(_ name: String) throws(AgentError) -> UInt64? {
                guard let value = element[name] else { return nil }
                if case .number(let text) = value, let number = UInt64(text) { return number }
                var what = "is not an unsigned 64-bit integer but \(value.kind)"
                if case .null = value { what = "is null" }
                throw .invalidArgument(prefix + "region \(index): \"\(name)\" \(what)")
            }
            func required(_ name: String) throws(AgentError) -> UInt64 {
                guard let value = try field(name) else { throw .invalidArgument(prefix + "region \(index): \"\(name)\" is missing") }
                return value
            }
            let base = try required("base_host_virt_addr")
            let size = try required("size")
            let offset = try required("offset")
            let pageSize: UInt64
            switch (try field("page_size"), try field("page_size_kib")) {
            case (nil, nil): pageSize = 4096
            case (let bytes?, nil): pageSize = bytes
            case (nil, let bytes?): pageSize = bytes
            case (let bytes?, let kib?):
                guard bytes == kib else {
                    throw .invalidArgument(prefix + "region \(index): \"page_size\" \(bytes) and \"page_size_kib\" \(kib) disagree (both hold bytes)")
                }
                pageSize = bytes
            }
            guard pageSize >= 4096, pageSize <= 1 << 30, pageSize & (pageSize - 1) == 0 else {
                let name = element["page_size"] != nil ? "page_size" : "page_size_kib"
                throw .invalidArgument(prefix + "region \(index): \"\(name)\" \(pageSize) is not a page size (a power of two from 4096 to 1 GiB, in bytes)")
            }
            regions.append(GuestRegion(baseHostVirtAddr: base, size: size, offset: offset, pageSize: Int(pageSize)))
        }
        return regions
    }

    // MARK: - Validation

    /// Checks the regions against the source's image: every region page-aligned (address, size, offset) for its page size,
    /// all regions one page size, non-empty, non-overlapping in address space and in the image, offsets inside the image,
    /// and total size equal to the image's `imageBytes`. Errors name the region (index, address) and what is wrong.
    /// Errors are `.invalidArgument`.
    public static func validate(_ regions: [GuestRegion], imageBytes: UInt64) throws(AgentError) {
        let prefix = "the VMM's regions do not fit the image: "
        guard let first = regions.first else { throw .invalidArgument(prefix + "the VMM sent no regions") }
        for (index, region) in regions.enumerated() {
            let name = region.name(index: index)
            let pageSize = UInt64(region.pageSize)
            guard region.pageSize == first.pageSize else {
                throw .invalidArgument(prefix + "\(name): page size \(region.pageSize) differs from region 0's \(first.pageSize)")
            }
            guard region.size > 0 else { throw .invalidArgument(prefix + "\(name): size is 0") }
            guard pageSize > 0, region.pageSize & (region.pageSize - 1) == 0 else {
                throw .invalidArgument(prefix + "\(name): page size \(region.pageSize) is not a power of two")
            }
            for (field, value) in [("address", region.baseHostVirtAddr), ("size", region.size), ("offset", region.offset)]
            where value % pageSize != 0 {
                throw .invalidArgument(prefix + "\(name): \(field) 0x\(String(value, radix: 16)) is not a multiple of the page size \(pageSize)")
            }
            guard region.baseHostVirtAddr.addingReportingOverflow(region.size).overflow == false else {
                throw .invalidArgument(prefix + "\(name): size \(region.size) runs past the end of the address space")
            }
            let (imageEnd, overflow) = region.offset.addingReportingOverflow(region.size)
            guard !overflow, imageEnd <= imageBytes else {
                throw .invalidArgument(prefix + "\(name): offset \(region.offset) + size \(region.size) lies outside the image of \(imageBytes) bytes")
            }
        }
        // Overlaps: after sorting, each region must end before the next one starts.
        let indices = Array(regions.indices)
        for (space, start) in [("the address space", \GuestRegion.baseHostVirtAddr), ("the image", \GuestRegion.offset)] {
            let sorted = indices.sorted { regions[$0][keyPath: start] < regions[$1][keyPath: start] }
            for (a, b) in zip(sorted, sorted.dropFirst()) where regions[a][keyPath: start] + regions[a].size > regions[b][keyPath: start] {
                throw .invalidArgument(prefix + "\(regions[b].name(index: b)) overlaps \(regions[a].name(index: a)) in \(space)")
            }
        }
        let total = regions.reduce(UInt64(0)) { $0 + $1.size }  // no overflow: disjoint ranges inside the image
        guard total == imageBytes else {
            throw .invalidArgument(prefix + "the \(regions.count) region(s) hold \(total) bytes, the image \(imageBytes)")
        }
    }

    // MARK: - The socket

    /// The listening socket and the file it made; `close` removes that file (only if it is still ours).
    private struct UnixListener {
        let fd: Int32
        let path: String
        let inode: UInt64

        init(path: String) throws(AgentError) {
            let bytes = Array(path.utf8)
            var address = sockaddr_un()
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
                throw .invalidArgument("the userfaultfd socket path must be 1 to \(capacity - 1) bytes: \(path)")
            }
            var existing = stat()
            if lstat(path, &existing) == 0 {
                guard existing.st_mode & S_IFMT == S_IFSOCK else {
                    throw .invalidArgument("\(path) exists and is not a socket; refusing to replace it")
                }
                guard unlink(path) == 0 else { throw .system("cannot remove the stale socket \(path): \(errnoText())") }
            }
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .system("socket(AF_UNIX) failed: \(errnoText())") }
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { sunPath in
                sunPath.copyBytes(from: bytes)
                sunPath[bytes.count] = 0
            }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            guard bound == 0 else {
                let text = errnoText()
                Glibc.close(fd)
                throw .system("cannot bind the userfaultfd socket \(path): \(text)")
            }
            var made = stat()
            let inode = lstat(path, &made) == 0 ? UInt64(made.st_ino) : 0
            guard listen(fd, 1) == 0 else {
                let text = errnoText()
                Glibc.close(fd)
                unlink(path)
                throw .system("listen on \(path) failed: \(text)")
            }
            self.fd = fd
            self.path = path
            self.inode = inode
        }

        /// Accepts one connection within `timeoutSeconds`.
        func acceptOne(timeoutSeconds: Double) throws(AgentError) -> Int32 {
            let deadline = monotonicSeconds() + max(0, timeoutSeconds)
            while true {
                guard try waitReadable(fd, until: deadline) else {
                    throw .peer("no VMM connected to \(path) within \(formatSeconds(timeoutSeconds))")
                }
                // accept4 is not visible from Swift's Glibc: accept, then close-on-exec.
                let connection = accept(fd, nil, nil)
                if connection >= 0 {
                    _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                    return connection
                }
                switch errno {
                case EINTR, EAGAIN, ECONNABORTED: continue
                default: throw .system("accept on \(path) failed: \(errnoText())")
                }
            }
        }

        func close() {
            Glibc.close(fd)
            var current = stat()
            if lstat(path, &current) == 0, UInt64(current.st_ino) == inode { unlink(path) }
        }
    }

    private static func peerPID(of connection: Int32) throws(AgentError) -> Int32 {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else {
            throw .system("getsockopt(SO_PEERCRED) on the VMM's connection failed: \(errnoText())")
        }
        return credentials.0
    }

    /// Reads until the text is complete and one descriptor came, or the deadline. Returns the text and the descriptor.
    private static func receiveMessage(on connection: Int32, timeoutSeconds: Double) throws(AgentError) -> ([UInt8], Int32) {
        let deadline = monotonicSeconds() + max(0, timeoutSeconds)
        var text: [UInt8] = []
        var descriptors: [Int32] = []
        func closeAll() { descriptors.forEach { _ = Glibc.close($0) } }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: receiveBufferBytes, alignment: 16)
        defer { buffer.deallocate() }
        // Room for 8 descriptors: more than one is an error we want to see and close, not have the kernel drop.
        let controlBytes = cmsgSpace(8 * MemoryLayout<Int32>.size)
        let control = UnsafeMutableRawBufferPointer.allocate(byteCount: controlBytes, alignment: 8)
        defer { control.deallocate() }

        while !(descriptors.count == 1 && isComplete(text)) {
            guard descriptors.count <= 1 else {
                closeAll()
                throw .peer("the VMM sent \(descriptors.count) file descriptors; a handover carries exactly one (its userfaultfd)")
            }
            let readable: Bool
            do throws(AgentError) { readable = try waitReadable(connection, until: deadline) } catch { closeAll(); throw error }
            guard readable else {
                closeAll()
                let waited = formatSeconds(timeoutSeconds)
                switch (text.contains { !isBlank($0) }, descriptors.isEmpty) {
                case (false, true):
                    throw .peer("the VMM connected but sent neither its regions nor its userfaultfd within \(waited)")
                case (true, true):
                    throw .peer("the VMM sent its regions (\(text.count) bytes) but no userfaultfd (no SCM_RIGHTS descriptor) within \(waited)")
                case (false, false):
                    throw .peer("the VMM sent its userfaultfd but no region JSON within \(waited)")
                case (true, false):
                    do throws(AgentError) { _ = try parseRegions(text) } catch {
                        throw .invalidArgument("\(error) (the text stayed incomplete for \(waited))")
                    }
                    throw .peer("the VMM's region JSON did not end with ']' within \(waited)")
                }
            }
            var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            var message = msghdr()
            let received = withUnsafeMutablePointer(to: &vector) { vectorPointer in
                message.msg_iov = vectorPointer
                message.msg_iovlen = 1
                message.msg_control = control.baseAddress
                message.msg_controllen = control.count
                return recvmsg(connection, &message, Int32(MSG_DONTWAIT) | Int32(MSG_CMSG_CLOEXEC))
            }
            if received < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                let cause = errnoText()
                closeAll()
                throw .system("reading the VMM's handover failed: \(cause)")
            }
            descriptors += scmRights(control, length: Int(message.msg_controllen))
            if message.msg_flags & Int32(MSG_CTRUNC) != 0 {
                closeAll()
                throw .peer("the VMM sent more file descriptors than a handover carries (exactly one, its userfaultfd)")
            }
            if received == 0 {
                closeAll()
                let hasText = text.contains { !isBlank($0) }
                let missing = descriptors.isEmpty ? (hasText ? "its userfaultfd" : "its regions and its userfaultfd")
                                                  : (hasText ? "the rest of its region JSON" : "its region JSON")
                throw .peer("the VMM closed the connection before sending \(missing)")
            }
            text += UnsafeRawBufferPointer(rebasing: buffer[0..<received])
            guard text.count <= maximumTextBytes else {
                closeAll()
                throw .peer("the VMM's region JSON exceeds \(maximumTextBytes) bytes")
            }
        }
        return (text, descriptors[0])
    }

    /// The descriptors of every SCM_RIGHTS message in a control buffer.
    private static func scmRights(_ control: UnsafeMutableRawBufferPointer, length: Int) -> [Int32] {
        var descriptors: [Int32] = []
        let headerBytes = cmsgAlign(MemoryLayout<cmsghdr>.size)
        var offset = 0
        while offset + headerBytes <= min(length, control.count) {
            let header = control.baseAddress!.advanced(by: offset).load(as: cmsghdr.self)
            let messageLength = Int(header.cmsg_len)
            guard messageLength >= headerBytes, offset + messageLength <= control.count else { break }
            if header.cmsg_level == SOL_SOCKET, header.cmsg_type == Int32(SCM_RIGHTS) {
                let count = (messageLength - headerBytes) / MemoryLayout<Int32>.size
                for slot in 0..<count {
                    descriptors.append(control.baseAddress!.advanced(by: offset + headerBytes + slot * 4).loadUnaligned(as: Int32.self))
                }
            }
            offset += cmsgAlign(messageLength)
        }
        return descriptors
    }

    private static func cmsgAlign(_ length: Int) -> Int { (length + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }
    private static func cmsgSpace(_ length: Int) -> Int { cmsgAlign(MemoryLayout<cmsghdr>.size) + cmsgAlign(length) }

    /// The VMM writes one JSON array and no framing: it is complete when its last non-blank byte closes the array.
    private static func isComplete(_ text: [UInt8]) -> Bool {
        text.last { !isBlank($0) } == UInt8(ascii: "]")
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 || byte == 0
    }

    private static func makeNonBlocking(_ fd: Int32) throws(AgentError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { throw .peer("the descriptor the VMM sent is not usable: fcntl(F_GETFL) failed: \(errnoText())") }
        if flags & O_NONBLOCK == 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 {
            throw .system("cannot make the VMM's userfaultfd non-blocking: \(errnoText())")
        }
    }
}

// MARK: - Small helpers

/// Polls `fd` for input until `deadline` (monotonic seconds): true when readable (or hung up), false at the deadline.
private func waitReadable(_ fd: Int32, until deadline: Double) throws(AgentError) -> Bool {
    while true {
        let remaining = deadline - monotonicSeconds()
        guard remaining > 0 else { return false }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, Int32(min(remaining * 1000, 60_000).rounded(.up)))
        if ready > 0 { return true }
        if ready < 0, errno != EINTR { throw .system("poll failed: \(errnoText())") }
    }
}

private func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

private func errnoText() -> String { String(cString: strerror(errno)) }

private func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
}
