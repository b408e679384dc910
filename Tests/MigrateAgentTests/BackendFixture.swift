import Foundation
import MigrateAgent
import Testing

/// The kernel's probe, run once for the whole test process.
enum Kernel {
    static let probe: KernelProbe? = {
        do { return try KernelProbe.run() } catch {
            print("MigrateAgentTests: userfaultfd unavailable, backend tests have no arguments: \(error)")
            return nil
        }
    }()

    /// Every backend the running kernel offers: the backend contract tests run once per entry.
    static let backends: [BackendKind] = {
        guard let probe else { return [] }
        let available = probe.availableBackends
        let missing = BackendKind.allCases.filter { !available.contains($0) }
        print("MigrateAgentTests: kernel \(probe.kernelRelease): backend contract tests run for "
            + available.map(\.rawValue).joined(separator: ", ")
            + (missing.isEmpty ? "" : "; SKIPPED for \(missing.map(\.rawValue).joined(separator: ", ")) "
                + "(the kernel lacks it\(missing.contains(.rwp) ? ": RWP needs UFFD_FEATURE_RWP, Linux 7.3" : ""))"))
        return available
    }()
}

/// The fault kind a backend reports for an access to a page it protected.
func protectedFaultKind(_ kind: BackendKind) -> FaultKind {
    switch kind {
    case .rwp, .minor: .protected
    case .missing: .missing
    }
}

/// A page-aligned page of bytes for UFFDIO_COPY sources and fresh contents.
final class PageBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let pageSize: Int
    init(pageSize: Int) {
        self.pageSize = pageSize
        pointer = .allocate(byteCount: pageSize, alignment: pageSize)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
    }
    deinit { pointer.deallocate() }

    /// Fills the buffer with page `index` at `version` and returns it.
    func filled(page index: Int, version: UInt32) -> UnsafeRawPointer {
        PageContent.fill(pointer, index: index, version: version, pageSize: pageSize)
        return UnsafeRawPointer(pointer)
    }
}

/// State shared between the resolver thread and the test, behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }
}

/// Fills pages of the io view (the agent's view: never faults) at `version`.
func fillIOView(_ arena: Arena, pages: Range<Int>, version: UInt32) {
    for page in pages { PageContent.fill(arena.ioPage(page), index: page, version: version, pageSize: arena.pageSize) }
}

/// Checks a page through the io view (never faults); nil when it holds `version`.
func ioViewProblem(_ arena: Arena, page: Int, version: UInt32) -> String? {
    if PageContent.verify(arena.ioPage(page), index: page, version: version, pageSize: arena.pageSize) { return nil }
    return "io view of page \(page): expected version \(version), found "
        + PageContent.describe(arena.ioPage(page), pageSize: arena.pageSize)
}
