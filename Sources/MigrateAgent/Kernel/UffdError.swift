import SystemPackage

/// A userfaultfd operation that failed, with the call and the kernel's errno,
/// and a hint for the errors whose cause is not obvious from errno alone.
public struct UffdError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Errno

    public init(_ operation: String, _ errno: Errno) {
        self.operation = operation
        self.errno = errno
    }

    public init(_ operation: String, code: Int32) {
        self.init(operation, Errno(rawValue: code))
    }

    public var description: String {
        var text = "\(operation) failed: \(errno) (errno \(errno.rawValue))"
        if let hint { text += ": \(hint)" }
        return text
    }

    var hint: String? {
        switch (operation, errno) {
        case ("userfaultfd", .permissionDenied), ("userfaultfd", .notPermitted):
            return Self.permissionHint
        case ("UFFDIO_API", .invalidArgument):
            return "the kernel refused a requested feature (or UFFDIO_API was called twice on one descriptor)"
        case ("UFFDIO_REGISTER", .resourceBusy):
            return "the range is already registered with another userfaultfd or mode"
        case ("UFFDIO_REGISTER", .invalidArgument):
            return "mode not supported for this memory (MINOR needs shmem/hugetlbfs; RWP needs Linux 7.3)"
        case ("UFFDIO_CONTINUE", .badAddress):
            return "no page in the page cache to map"
        default:
            return nil
        }
    }

    /// The ways out when userfaultfd is not permitted.
    public static let permissionHint =
        "userfaultfd is not permitted for this user. Run as root, grant CAP_SYS_PTRACE, "
        + "set sysctl vm.unprivileged_userfaultfd=1, or give read-write access to /dev/userfaultfd"
}
