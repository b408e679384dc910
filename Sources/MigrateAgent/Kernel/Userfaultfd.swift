import CUffd
import SystemPackage

/// One userfaultfd descriptor: a thin Swift face over each ioctl (the
/// corresponding kernel call is named on each method). Errors are `UffdError`
/// carrying the errno. Not thread-safe by itself: the destination's loop thread
/// owns it, except that `unregister` and `close` may release stuck faults
/// from any thread during shutdown.
public final class Userfaultfd: @unchecked Sendable {
    /// How the descriptor was obtained.
    public enum OpenedBy: String, Codable, Sendable {
        case syscall = "userfaultfd(2)"
        case device = "/dev/userfaultfd"
        /// Another process (a VMM) made it, negotiated it and handed it over.
        case handedOver = "handed over"
    }

    public private(set) var fd: Int32
    public let openedBy: OpenedBy
    /// Features the kernel granted in `UFFDIO_API`.
    public private(set) var features: UffdFeatures = []
    /// Ioctls the kernel allows on this descriptor (bit per `_UFFDIO_*` number).
    public private(set) var apiIoctls: UInt64 = 0

    /// Opens a non-blocking, close-on-exec userfaultfd: the syscall, then /dev/userfaultfd.
    public init(userModeOnly: Bool = false) throws(UffdError) {
        var how: Int32 = 0
        var deviceErrno: Int32 = 0
        let fd = cuffd_open(userModeOnly ? 1 : 0, &how, &deviceErrno)
        guard fd >= 0 else { throw UffdError("userfaultfd", code: -fd) }
        self.fd = fd
        self.openedBy = how == Int32(CUFFD_OPEN_DEVICE.rawValue) ? .device : .syscall
    }

    /// Adopts a descriptor another process made and negotiated (`UFFDIO_API` is
    /// accepted once per descriptor, so it is not called again). Closes it at deinit.
    public init(adopting fd: Int32) {
        self.fd = fd
        self.openedBy = .handedOver
    }

    deinit { close() }

    /// `UFFDIO_API`: negotiates `requested` features; the kernel accepts this once per descriptor.
    public func negotiate(_ requested: UffdFeatures) throws(UffdError) {
        var granted: UInt64 = 0
        var ioctls: UInt64 = 0
        let rc = cuffd_api(fd, requested.rawValue, &granted, &ioctls)
        guard rc == 0 else { throw UffdError("UFFDIO_API", code: -rc) }
        features = UffdFeatures(rawValue: granted)
        apiIoctls = ioctls
    }

    /// A new descriptor negotiated with `required` plus those of `optional` the kernel offers
    /// (read first on a throw-away descriptor: `UFFDIO_API` is accepted once per descriptor).
    public static func negotiated(_ required: UffdFeatures, optional: UffdFeatures) throws(UffdError) -> Userfaultfd {
        var wanted = required
        if !optional.isEmpty {
            let probe = try Userfaultfd()
            try probe.negotiate([])
            wanted.formUnion(optional.intersection(probe.features))
            probe.close()
        }
        let uffd = try Userfaultfd()
        try uffd.negotiate(wanted)
        return uffd
    }

    /// `UFFDIO_REGISTER`: returns the ioctls allowed on the range.
    @discardableResult
    public func register(_ start: UnsafeMutableRawPointer, length: Int, mode: UffdRegisterMode) throws(UffdError) -> UInt64 {
        var ioctls: UInt64 = 0
        let rc = cuffd_register(fd, start, UInt64(length), mode.rawValue, &ioctls)
        guard rc == 0 else { throw UffdError("UFFDIO_REGISTER", code: -rc) }
        return ioctls
    }

    /// `UFFDIO_UNREGISTER`: faults blocked in the range retry without userfaultfd.
    public func unregister(_ start: UnsafeMutableRawPointer, length: Int) throws(UffdError) {
        let rc = cuffd_unregister(fd, start, UInt64(length))
        guard rc == 0 else { throw UffdError("UFFDIO_UNREGISTER", code: -rc) }
    }

    /// `UFFDIO_WAKE`: wakes threads waiting on faults in the range.
    public func wake(_ start: UnsafeMutableRawPointer, length: Int) throws(UffdError) {
        let rc = cuffd_wake(fd, start, UInt64(length))
        guard rc == 0 else { throw UffdError("UFFDIO_WAKE", code: -rc) }
    }

    /// `UFFDIO_COPY`: returns the errno and the bytes copied, which the kernel
    /// reports also on a partial failure (EEXIST marks a page already there).
    /// Not throwing: EEXIST is a normal outcome on the hot path.
    public func copy(to dst: UnsafeMutableRawPointer, from src: UnsafeRawPointer, length: Int, wake: Bool = true) -> CopyResult {
        var copied: Int64 = 0
        let rc = cuffd_copy(fd, dst, src, UInt64(length), wake ? 0 : CUFFD_COPY_MODE_DONTWAKE, &copied)
        return CopyResult(errno: rc == 0 ? 0 : -rc, bytes: copied)
    }

    /// `UFFDIO_ZEROPAGE`.
    public func zeroPage(_ dst: UnsafeMutableRawPointer, length: Int) -> CopyResult {
        var zeroed: Int64 = 0
        let rc = cuffd_zeropage(fd, dst, UInt64(length), 0, &zeroed)
        return CopyResult(errno: rc == 0 ? 0 : -rc, bytes: zeroed)
    }

    /// `UFFDIO_CONTINUE`: maps pages already in the page cache.
    public func `continue`(_ start: UnsafeMutableRawPointer, length: Int) -> CopyResult {
        var mapped: Int64 = 0
        let rc = cuffd_continue(fd, start, UInt64(length), 0, &mapped)
        return CopyResult(errno: rc == 0 ? 0 : -rc, bytes: mapped)
    }

    /// `UFFDIO_RWPROTECT` (Linux 7.3): `protect` true arms, false unprotects and wakes.
    public func readWriteProtect(_ start: UnsafeMutableRawPointer, length: Int, protect: Bool) throws(UffdError) {
        let rc = cuffd_rwprotect(fd, start, UInt64(length), protect ? CUFFD_RWPROTECT_MODE_RWP : 0)
        guard rc == 0 else { throw UffdError("UFFDIO_RWPROTECT", code: -rc) }
    }

    /// `UFFDIO_SET_MODE` (Linux 7.3): switches toggleable features (only `RWP_ASYNC`) on or off for
    /// the whole descriptor. Enabling `RWP_ASYNC` wakes every thread waiting on an RWP fault.
    public func setMode(enable: UffdFeatures = [], disable: UffdFeatures = []) throws(UffdError) {
        let rc = cuffd_set_mode(fd, enable.rawValue, disable.rawValue)
        guard rc == 0 else { throw UffdError("UFFDIO_SET_MODE", code: -rc) }
    }

    /// `UFFDIO_WRITEPROTECT`.
    public func writeProtect(_ start: UnsafeMutableRawPointer, length: Int, protect: Bool) throws(UffdError) {
        let rc = cuffd_writeprotect(fd, start, UInt64(length), protect ? CUFFD_WRITEPROTECT_MODE_WP : 0)
        guard rc == 0 else { throw UffdError("UFFDIO_WRITEPROTECT", code: -rc) }
    }

    /// Whether a message waits to be read (`poll` with no timeout; an error says yes,
    /// so that the read that follows reports it).
    public var hasMessages: Bool { cuffd_has_msgs(fd) != 0 }

    /// Reads pending fault messages into `buffer` in one read(2); returns how many (0 when none).
    public func readMessages(into buffer: UnsafeMutablePointer<uffd_msg>, capacity: Int) throws(UffdError) -> Int {
        let n = cuffd_read_msgs(fd, buffer, Int32(capacity))
        guard n >= 0 else { throw UffdError("read(userfaultfd)", code: -n) }
        return Int(n)
    }

    /// Closes the descriptor: every blocked fault is released. Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        try? SystemPackage.FileDescriptor(rawValue: fd).close()
        fd = -1
    }

    /// The outcome of a COPY-like ioctl: errno 0 on success, bytes done even on failure.
    public struct CopyResult: Sendable {
        public let errno: Int32
        public let bytes: Int64
        public var succeeded: Bool { errno == 0 }
        public var alreadyPresent: Bool { errno == Errno.fileExists.rawValue }
    }
}
