import CUffd
import MigrateAgent

/// One page-fault message as the self-test's resolver read it.
struct PageFault: Sendable {
    let address: UInt64
    let flags: UInt64
    /// The arena page, nil when the address is outside the arena.
    let page: Int?

    var isWrite: Bool { flags & CUFFD_PAGEFAULT_FLAG_WRITE != 0 }

    /// The page, or the raw address for a fault outside the arena.
    var pageText: String { page.map { "page \($0)" } ?? "address 0x\(String(address, radix: 16)) (outside the arena)" }

    /// The flags in hex with their names, e.g. `0x9 (WRITE|RWP)`.
    var flagsText: String {
        let names = Self.flagNames.filter { flags & $0.bit != 0 }.map(\.name)
        return "0x\(String(flags, radix: 16))" + (names.isEmpty ? "" : " (\(names.joined(separator: "|")))")
    }

    /// `UFFD_PAGEFAULT_FLAG_*` bits and their names without the prefix.
    static let flagNames: [(bit: UInt64, name: String)] = [
        (CUFFD_PAGEFAULT_FLAG_WRITE, "WRITE"), (CUFFD_PAGEFAULT_FLAG_WP, "WP"),
        (CUFFD_PAGEFAULT_FLAG_MINOR, "MINOR"), (CUFFD_PAGEFAULT_FLAG_RWP, "RWP"),
    ]
}

/// The flag bits a backend's faults must carry, by backend and fault kind.
struct FaultFlagRule {
    let kind: BackendKind

    /// The bit that marks a fault on a protected page of this backend, nil when
    /// such a fault is an ordinary MISSING fault (the `missing` backend).
    var protectionBit: UInt64? {
        switch kind {
        case .rwp: CUFFD_PAGEFAULT_FLAG_RWP
        case .minor: CUFFD_PAGEFAULT_FLAG_MINOR
        case .missing: nil
        }
    }

    /// What `classify` must say for an access to a page this backend protected.
    var protectedKind: FaultKind { protectionBit == nil ? .missing : .protected }

    /// What is wrong with the flags of a fault on an absent page, or nil.
    func absentProblem(_ fault: PageFault, access: AccessKind?) -> String? {
        let kindBits = CUFFD_PAGEFAULT_FLAG_WP | CUFFD_PAGEFAULT_FLAG_MINOR | CUFFD_PAGEFAULT_FLAG_RWP
        if fault.flags & kindBits != 0 {
            return "\(fault.pageText) is absent but its fault has flags \(fault.flagsText), not a plain MISSING fault"
        }
        return writeProblem(fault, access: access)
    }

    /// What is wrong with the flags of a fault on a protected page, or nil.
    func protectedProblem(_ fault: PageFault, access: AccessKind?) -> String? {
        let otherBits = (CUFFD_PAGEFAULT_FLAG_WP | CUFFD_PAGEFAULT_FLAG_MINOR | CUFFD_PAGEFAULT_FLAG_RWP) & ~(protectionBit ?? 0)
        if let bit = protectionBit, fault.flags & bit == 0 {
            return "\(fault.pageText) is protected but its fault has flags \(fault.flagsText), without \(Self.name(of: bit))"
        }
        if fault.flags & otherBits != 0 {
            return "\(fault.pageText) is protected by \(kind.rawValue) but its fault has flags \(fault.flagsText)"
        }
        return writeProblem(fault, access: access)
    }

    /// A fault's WRITE bit must match the access that caused it (nil: several kinds of access, not checked).
    private func writeProblem(_ fault: PageFault, access: AccessKind?) -> String? {
        guard let access, fault.isWrite != (access == .write) else { return nil }
        return "\(fault.pageText) is only \(access == .write ? "written" : "read") but its fault has flags \(fault.flagsText)"
    }

    private static func name(of bit: UInt64) -> String {
        "UFFD_PAGEFAULT_FLAG_" + (PageFault.flagNames.first { $0.bit == bit }?.name ?? "0x\(String(bit, radix: 16))")
    }
}
