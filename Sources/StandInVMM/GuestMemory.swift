import CUffd
import Glibc

/// One mapped guest region and where its bytes are in the image.
struct Region {
    let base: UnsafeMutableRawPointer
    let size: Int
    let offset: Int
}

/// The guest's memory as Firecracker sets it up for a Uffd backend (vstate/memory.rs, persist.rs
/// `guest_memory_from_uffd`): a PROT_NONE reservation aligned to 2 MiB, each region mapped into it
/// on its own (`MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE`, plus `MAP_HUGETLB|MAP_HUGE_2MB` for
/// hugetlbfs), offsets consecutive in the image; one userfaultfd (`O_CLOEXEC|O_NONBLOCK`, not
/// user-mode-only, `UFFDIO_API` with `UFFD_FEATURE_EVENT_REMOVE`) with every region registered MISSING.
struct GuestMemory {
    let regions: [Region]
    let pageSize: Int
    let uffd: Int32

    /// The address hole between the two regions of the gap layout: x86's 3–4 GiB MMIO gap.
    static let gapBytes = 1 << 30
    static let alignment = 2 << 20

    init(imageBytes: Int, layout: Options.Layout, pageSize: Int) throws(Failure) {
        guard imageBytes > 0, imageBytes % pageSize == 0 else {
            throw Failure(2, "the image holds \(imageBytes) bytes, not a whole number of \(pageSize)-byte pages")
        }
        var sizes = [imageBytes]
        if layout == .gap {
            let pages = imageBytes / pageSize
            guard pages >= 2 else { throw Failure(2, "--layout gap needs an image of at least two pages") }
            let first = min(max(pages * 3 / 4, 1), pages - 1) * pageSize  // like 3 GiB below the gap
            sizes = [first, imageBytes - first]
        }
        let hole = layout == .gap ? Self.gapBytes : 0
        let reservation = imageBytes + hole + Self.alignment
        guard let reserved = mmap(nil, reservation, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              reserved != MAP_FAILED else {
            throw Failure(2, "cannot reserve \(reservation) bytes of address space: \(errnoText())")
        }
        var next = (Int(bitPattern: reserved) + Self.alignment - 1) & ~(Self.alignment - 1)
        let hugetlb = pageSize == 2 << 20 ? MAP_HUGETLB | (21 << 26 /* MAP_HUGE_2MB */) : 0
        var regions: [Region] = []
        var offset = 0
        for size in sizes {
            let wanted = UnsafeMutableRawPointer(bitPattern: next)
            let mapped = mmap(wanted, size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED | hugetlb, -1, 0)
            guard let mapped, mapped != MAP_FAILED else {
                let hint = hugetlb != 0 ? " (are huge pages reserved? /proc/sys/vm/nr_hugepages)" : ""
                throw Failure(2, "cannot map a guest region of \(size) bytes: \(errnoText())\(hint)")
            }
            regions.append(Region(base: mapped, size: size, offset: offset))
            offset += size
            next += size + hole
        }
        var how: Int32 = 0
        var deviceErrno: Int32 = 0
        let uffd = cuffd_open(0, &how, &deviceErrno)
        guard uffd >= 0 else {
            throw Failure(2, "userfaultfd: \(String(cString: strerror(-uffd))) (/dev/userfaultfd: \(String(cString: strerror(deviceErrno))))")
        }
        var features: UInt64 = 0
        var ioctls: UInt64 = 0
        let api = cuffd_api(uffd, CUFFD_FEATURE_EVENT_REMOVE, &features, &ioctls)
        guard api == 0 else { throw Failure(2, "UFFDIO_API with UFFD_FEATURE_EVENT_REMOVE: \(String(cString: strerror(-api)))") }
        for region in regions {
            let registered = cuffd_register(uffd, region.base, UInt64(region.size), CUFFD_REGISTER_MODE_MISSING, &ioctls)
            guard registered == 0 else {
                throw Failure(2, "UFFDIO_REGISTER (MISSING) of \(region.size) bytes at \(region.base): \(String(cString: strerror(-registered)))")
            }
        }
        self.regions = regions
        self.pageSize = pageSize
        self.uffd = uffd
    }

    /// The handover text: Firecracker's `serde_json::to_string(&Vec<GuestRegionUffdMapping>)`.
    func regionJSON(_ keys: Options.JSONKeys) -> String {
        let entries = regions.map { region in
            var fields = ["\"base_host_virt_addr\":\(UInt(bitPattern: region.base))", "\"size\":\(region.size)",
                          "\"offset\":\(region.offset)"]
            switch keys {
            case .none: break
            case .kib: fields.append("\"page_size_kib\":\(pageSize)")
            case .bytes: fields += ["\"page_size\":\(pageSize)", "\"page_size_kib\":\(pageSize)"]
            case .bytesOnly: fields.append("\"page_size\":\(pageSize)")
            }
            return "{" + fields.joined(separator: ",") + "}"
        }
        return "[" + entries.joined(separator: ",") + "]"
    }
}

/// Connects to the handler's socket (retrying while it does not exist yet or refuses, until
/// `deadline`) and sends ONE message: `text` with `fd` as its one SCM_RIGHTS descriptor. Returns
/// the connected socket, which the caller keeps open (Firecracker 1.12+ never closes it).
func sendHandover(socketPath: String, text: String, fd: Int32, deadline: Double) throws(Failure) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let path = Array(socketPath.utf8)
    guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure(2, "--socket path too long") }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + 1)
    var connection: Int32 = -1
    while connection < 0 {
        let candidate = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard candidate >= 0 else { throw Failure(2, "socket: \(errnoText())") }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(candidate, $0, length) }
        }
        if rc == 0 { connection = candidate; break }
        let code = errno
        close(candidate)
        guard code == ENOENT || code == ECONNREFUSED || code == EINTR, monotonicSeconds() < deadline else {
            throw Failure(2, "cannot connect to \(socketPath): \(String(cString: strerror(code)))")
        }
        usleep(20_000)
    }
    var bytes = Array(text.utf8)
    // One cmsghdr (16 bytes on 64-bit Linux) plus one descriptor, aligned: CMSG_SPACE(sizeof(int)).
    let headerBytes = MemoryLayout<cmsghdr>.size
    let control = UnsafeMutableRawBufferPointer.allocate(byteCount: headerBytes + 8, alignment: 8)
    defer { control.deallocate() }
    control.initializeMemory(as: UInt8.self, repeating: 0)
    var header = cmsghdr()
    header.cmsg_len = headerBytes + MemoryLayout<Int32>.size  // CMSG_LEN(sizeof(int))
    header.cmsg_level = SOL_SOCKET
    header.cmsg_type = Int32(SCM_RIGHTS)
    control.storeBytes(of: header, as: cmsghdr.self)
    control.storeBytes(of: fd, toByteOffset: headerBytes, as: Int32.self)
    let sent = bytes.withUnsafeMutableBytes { buffer -> Int in
        var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var message = msghdr()
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            message.msg_control = control.baseAddress
            message.msg_controllen = control.count
            return sendmsg(connection, &message, Int32(MSG_NOSIGNAL))
        }
    }
    guard sent == bytes.count else {
        throw Failure(2, "sendmsg of the handover sent \(sent) of \(bytes.count) bytes: \(sent < 0 ? errnoText() : "short")")
    }
    return connection
}

/// An exit status and the message for it.
struct Failure: Error {
    let status: Int32
    let message: String
    init(_ status: Int32, _ message: String) {
        self.status = status
        self.message = message
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
