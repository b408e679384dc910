import CUffd
import MigrateAgent

/// Check 1, classification: `classify(flags:)` is the same function for every
/// backend. A fault with the MINOR or the RWP bit is a fault on a protected
/// page; one with neither (with or without WRITE) is a missing page. The
/// destination's fault decisions rest on this (see `FaultAction`).
struct ClassifyCheck {
    let context: CheckContext

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        let backend = try context.makeBackend(pages: 1, for: .classify)
        defer { backend.release() }
        let write = CUFFD_PAGEFAULT_FLAG_WRITE
        let cases: [(flags: UInt64, expected: FaultKind)] = [
            (0, .missing), (write, .missing),
            (CUFFD_PAGEFAULT_FLAG_MINOR, .protected), (CUFFD_PAGEFAULT_FLAG_MINOR | write, .protected),
            (CUFFD_PAGEFAULT_FLAG_RWP, .protected), (CUFFD_PAGEFAULT_FLAG_RWP | write, .protected),
        ]
        for (flags, expected) in cases {
            let kind = backend.classify(flags: flags)
            let text = PageFault(address: 0, flags: flags, page: nil).flagsText
            findings.expect(kind == expected, "classify(\(text)) is \(kind), expected \(expected)")
        }
        return "\(cases.count) flag combinations classified: none or WRITE missing, MINOR or RWP protected"
    }
}
