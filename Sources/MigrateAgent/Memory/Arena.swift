import CUffd
import Glibc

/// Guest memory: one memfd mapped twice. The *guest view* is what guest
/// threads touch and what userfaultfd registers; the *io view* is only for the
/// agent, so it can fill or read a page without faulting on its own arena.
/// Or, on a source serving an existing image, the image file mapped once,
/// read-only: both views are that mapping and nothing may write it.
/// Immutable after init; the memory itself is shared by design (guest threads
/// touch pages, the loop thread installs them), its ordering given by the kernel.
public final class Arena: @unchecked Sendable {
    public static let systemPageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    public let size: Int
    public let pageSize: Int
    public let pageCount: Int
    public let guestBase: UnsafeMutableRawPointer
    public let ioBase: UnsafeMutableRawPointer
    private let memfd: Int32
    /// The file this arena maps read-only, or nil for a memfd arena.
    public let imagePath: String?

    /// Refuses, before anything is allocated, an arena this machine cannot
    /// hold (`MemoryBudget`: available memory, the memory cgroup, rlimits).
    public init(size: Int, pageSize: Int = Arena.systemPageSize, name: String = "guest-arena") throws(AgentError) {
        precondition(size > 0 && size % pageSize == 0, "arena size must be a whole number of pages")
        try MemoryBudget.current().check(arenaBytes: size, pageSize: pageSize)
        let fd = cuffd_memfd_create(name, CUFFD_MFD_CLOEXEC)
        guard fd >= 0 else { throw .system("memfd_create: \(String(cString: strerror(-fd)))") }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let e = errno
            close(fd)
            throw .system("ftruncate of a \(ByteSize(bytes: size)) memfd: \(String(cString: strerror(e)))")
        }
        guard let guest = Self.map(fd, size), let io = Self.map(fd, size) else {
            let e = errno
            close(fd)
            throw .system("mmap of a \(ByteSize(bytes: size)) memfd: \(String(cString: strerror(e)))")
        }
        self.memfd = fd
        self.size = size
        self.pageSize = pageSize
        self.pageCount = size / pageSize
        self.guestBase = guest
        self.ioBase = io
        self.imagePath = nil
    }

    /// An existing memory image (a snapshot's memory file, or any file of whole
    /// pages), mapped read-only. Unreadable, empty or misaligned files are refused
    /// with the reason and the path.
    public init(imageAt path: String, pageSize: Int = Arena.systemPageSize) throws(AgentError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .invalidArgument("cannot open the memory file \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .invalidArgument("the memory file \(path) is not a regular file")
        }
        let size = Int(info.st_size)
        guard size > 0, size % pageSize == 0 else {
            close(fd)
            throw .invalidArgument("the memory file \(path) has \(size) bytes, not a whole number of \(pageSize)-byte pages"
                + (size == 0 ? " (it is empty)" : ""))
        }
        let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
        guard p != MAP_FAILED, let base = p else {
            let e = errno
            close(fd)
            throw .system("mmap of the memory file \(path) (\(ByteSize(bytes: size))): \(String(cString: strerror(e)))")
        }
        self.memfd = fd
        self.size = size
        self.pageSize = pageSize
        self.pageCount = size / pageSize
        self.guestBase = base
        self.ioBase = base
        self.imagePath = path
    }

    deinit {
        munmap(guestBase, size)
        if ioBase != guestBase { munmap(ioBase, size) }
        close(memfd)
    }

    private static func map(_ fd: Int32, _ size: Int) -> UnsafeMutableRawPointer? {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        return p == MAP_FAILED ? nil : p
    }

    @inline(__always) public func guestPage(_ index: Int) -> UnsafeMutableRawPointer { guestBase + index * pageSize }
    @inline(__always) public func ioPage(_ index: Int) -> UnsafeMutableRawPointer { ioBase + index * pageSize }

    /// The page index of a guest-view address, or nil when outside the arena.
    @inline(__always) public func pageIndex(ofGuestAddress address: UInt64) -> Int? {
        let base = UInt64(UInt(bitPattern: guestBase))
        guard address >= base, address < base + UInt64(size) else { return nil }
        return Int((address - base) / UInt64(pageSize))
    }

    /// Maps every page of the io view now (`MADV_POPULATE_READ`, Linux 5.14+), so
    /// that reading the arena later (the source's stream and digest) takes no page
    /// faults; nil when done, else why not (older kernels: the reads fault instead).
    public func mapIOView() -> String? {
        guard madvise(ioBase, size, 22 /* MADV_POPULATE_READ */) == 0 else {
            return "madvise(MADV_POPULATE_READ) on the io view: \(String(cString: strerror(errno)))"
        }
        return nil
    }

    /// Allocates and maps every page of the io view now (`MADV_POPULATE_WRITE`,
    /// Linux 5.14+): the memory is committed before the migration, and a page
    /// that arrives later is a copy into memory already there. Returns 0 when
    /// done, else the errno (`EINVAL`: a kernel before 5.14; `ENOMEM`: no memory).
    public func populateIOView() -> Int32 {
        madvise(ioBase, size, 23 /* MADV_POPULATE_WRITE */) == 0 ? 0 : errno
    }

    /// Drops the guest view's mapping of pages (the page cache keeps them): the
    /// next guest access faults as MINOR on a MINOR-registered range.
    public func zapGuestView(page: Int, count: Int = 1) throws(AgentError) {
        guard madvise(guestPage(page), count * pageSize, MADV_DONTNEED) == 0 else {
            throw .system("madvise(MADV_DONTNEED) on pages \(page)..<\(page + count): \(String(cString: strerror(errno)))")
        }
    }

    /// Removes pages from the memfd entirely (contents gone): the next access faults as MISSING.
    public func punchHole(page: Int, count: Int = 1) throws(AgentError) {
        let rc = cuffd_punch_hole(memfd, Int64(page * pageSize), Int64(count * pageSize))
        guard rc == 0 else {
            throw .system("fallocate(PUNCH_HOLE) on pages \(page)..<\(page + count): \(String(cString: strerror(-rc)))")
        }
    }
}
