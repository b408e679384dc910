import CUffd

/// Feature bits of `UFFDIO_API` (`uffdio_api.features`), with their kernel names.
public struct UffdFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let pagefaultFlagWP = UffdFeatures(rawValue: CUFFD_FEATURE_PAGEFAULT_FLAG_WP)
    public static let eventFork = UffdFeatures(rawValue: CUFFD_FEATURE_EVENT_FORK)
    public static let eventRemap = UffdFeatures(rawValue: CUFFD_FEATURE_EVENT_REMAP)
    public static let eventRemove = UffdFeatures(rawValue: CUFFD_FEATURE_EVENT_REMOVE)
    public static let eventUnmap = UffdFeatures(rawValue: CUFFD_FEATURE_EVENT_UNMAP)
    public static let missingHugetlbfs = UffdFeatures(rawValue: CUFFD_FEATURE_MISSING_HUGETLBFS)
    public static let missingShmem = UffdFeatures(rawValue: CUFFD_FEATURE_MISSING_SHMEM)
    public static let sigbus = UffdFeatures(rawValue: CUFFD_FEATURE_SIGBUS)
    public static let threadID = UffdFeatures(rawValue: CUFFD_FEATURE_THREAD_ID)
    public static let minorHugetlbfs = UffdFeatures(rawValue: CUFFD_FEATURE_MINOR_HUGETLBFS)
    public static let minorShmem = UffdFeatures(rawValue: CUFFD_FEATURE_MINOR_SHMEM)
    public static let exactAddress = UffdFeatures(rawValue: CUFFD_FEATURE_EXACT_ADDRESS)
    public static let wpHugetlbfsShmem = UffdFeatures(rawValue: CUFFD_FEATURE_WP_HUGETLBFS_SHMEM)
    public static let wpUnpopulated = UffdFeatures(rawValue: CUFFD_FEATURE_WP_UNPOPULATED)
    public static let poison = UffdFeatures(rawValue: CUFFD_FEATURE_POISON)
    public static let wpAsync = UffdFeatures(rawValue: CUFFD_FEATURE_WP_ASYNC)
    public static let move = UffdFeatures(rawValue: CUFFD_FEATURE_MOVE)
    public static let rwp = UffdFeatures(rawValue: CUFFD_FEATURE_RWP)
    public static let rwpAsync = UffdFeatures(rawValue: CUFFD_FEATURE_RWP_ASYNC)

    /// Every bit this program knows, in bit order, with the kernel's name.
    public static let named: [(UffdFeatures, String)] = [
        (.pagefaultFlagWP, "PAGEFAULT_FLAG_WP"), (.eventFork, "EVENT_FORK"), (.eventRemap, "EVENT_REMAP"),
        (.eventRemove, "EVENT_REMOVE"), (.eventUnmap, "EVENT_UNMAP"), (.missingHugetlbfs, "MISSING_HUGETLBFS"),
        (.missingShmem, "MISSING_SHMEM"), (.sigbus, "SIGBUS"), (.threadID, "THREAD_ID"),
        (.minorHugetlbfs, "MINOR_HUGETLBFS"), (.minorShmem, "MINOR_SHMEM"), (.exactAddress, "EXACT_ADDRESS"),
        (.wpHugetlbfsShmem, "WP_HUGETLBFS_SHMEM"), (.wpUnpopulated, "WP_UNPOPULATED"), (.poison, "POISON"),
        (.wpAsync, "WP_ASYNC"), (.move, "MOVE"), (.rwp, "RWP"), (.rwpAsync, "RWP_ASYNC"),
    ]

    /// Kernel names of the bits set, plus `BIT<n>` for bits newer than this program.
    public var names: [String] {
        var result = Self.named.filter { contains($0.0) }.map(\.1)
        let known = Self.named.reduce(UInt64(0)) { $0 | $1.0.rawValue }
        for bit in 0..<64 where rawValue & ~known & (1 << UInt64(bit)) != 0 { result.append("BIT\(bit)") }
        return result
    }
}

/// `UFFDIO_REGISTER` modes.
public struct UffdRegisterMode: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let missing = UffdRegisterMode(rawValue: CUFFD_REGISTER_MODE_MISSING)
    public static let writeProtect = UffdRegisterMode(rawValue: CUFFD_REGISTER_MODE_WP)
    public static let minor = UffdRegisterMode(rawValue: CUFFD_REGISTER_MODE_MINOR)
    public static let readWriteProtect = UffdRegisterMode(rawValue: CUFFD_REGISTER_MODE_RWP)
}
