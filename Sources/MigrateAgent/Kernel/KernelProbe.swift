import CUffd
import Glibc

/// What the running kernel offers for userfaultfd, found with throw-away
/// descriptors (the kernel accepts `UFFDIO_API` once per descriptor).
public struct KernelProbe: Codable, Sendable {
    public var kernelRelease: String
    /// How the userfaultfd was opened ("userfaultfd(2)" or "/dev/userfaultfd").
    public var openedBy: String
    public var featureBits: UInt64
    public var features: [String]
    public var shmemMissing: Bool
    public var shmemMinor: Bool
    public var writeProtectAsync: Bool
    public var pagemapScan: Bool
    public var readWriteProtect: Bool
    /// The backend `--protection auto` picks.
    public var backend: BackendKind

    /// Runs the probe. Throws `UffdError` (with the ways out) when userfaultfd is not permitted.
    public static func run() throws(UffdError) -> KernelProbe {
        let uffd = try Userfaultfd()
        try uffd.negotiate([])
        let features = uffd.features
        let shmemMinor = features.contains(.minorShmem) && canRegisterMinorOnShmem()
        let probe = KernelProbe(
            kernelRelease: kernelRelease(),
            openedBy: uffd.openedBy.rawValue,
            featureBits: features.rawValue,
            features: features.names,
            shmemMissing: features.contains(.missingShmem),
            shmemMinor: shmemMinor,
            writeProtectAsync: features.contains(.wpAsync),
            pagemapScan: hasPagemapScan(),
            readWriteProtect: features.contains(.rwp),
            backend: BackendKind.best(features: features, shmemMinor: shmemMinor)
        )
        return probe
    }

    /// The backends this kernel can run.
    public var availableBackends: [BackendKind] {
        BackendKind.allCases.filter { isAvailable($0) }
    }

    public func isAvailable(_ kind: BackendKind) -> Bool {
        switch kind {
        case .rwp: readWriteProtect && shmemMissing
        case .minor: shmemMinor && shmemMissing
        case .missing: shmemMissing
        }
    }

    /// Resolves `--protection`: `nil` means auto. Forcing a backend the kernel lacks is an error.
    public func select(_ requested: BackendKind?) throws(AgentError) -> BackendKind {
        guard let requested else { return backend }
        guard isAvailable(requested) else {
            throw AgentError.unsupported(
                "protection backend '\(requested.rawValue)' is not available on kernel \(kernelRelease) "
                + "(available: \(availableBackends.map(\.rawValue).joined(separator: ", ")))")
        }
        return requested
    }

    /// The running kernel's release (`uname -r`), without opening a userfaultfd.
    public static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// MINOR registration on a one-page memfd with a second throw-away descriptor.
    static func canRegisterMinorOnShmem() -> Bool {
        guard let arena = try? Arena(size: Arena.systemPageSize, name: "probe"),
              let uffd = try? Userfaultfd(),
              (try? uffd.negotiate([.missingShmem, .minorShmem])) != nil
        else { return false }
        let registered = (try? uffd.register(arena.guestBase, length: arena.size, mode: [.missing, .minor])) != nil
        // Unregister and close while the mapping still exists: unmapping a
        // registered range first was seen to block in munmap on this kernel.
        if registered { try? uffd.unregister(arena.guestBase, length: arena.size) }
        uffd.close()
        withExtendedLifetime(arena) {}
        return registered
    }

    /// PAGEMAP_SCAN (Linux 6.7) on one page of our own memory.
    static func hasPagemapScan() -> Bool {
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let size = Arena.systemPageSize
        guard let page = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              page != MAP_FAILED else { return false }
        defer { munmap(page, size) }
        var region = cuffd_page_region()
        var walkEnd: UInt64 = 0
        let rc = cuffd_pagemap_scan(fd, page, page + size, 0, &region, 1, 0,
                                    CUFFD_PAGE_IS_PRESENT, CUFFD_PAGE_IS_PRESENT, &walkEnd)
        return rc >= 0
    }
}

/// A page-protection backend (docs/architecture.md, "Protection backends").
public enum BackendKind: String, Codable, Sendable, CaseIterable {
    case rwp, minor, missing

    static func best(features: UffdFeatures, shmemMinor: Bool) -> BackendKind {
        if features.contains(.rwp) && features.contains(.missingShmem) { return .rwp }
        if shmemMinor && features.contains(.missingShmem) { return .minor }
        return .missing
    }
}
