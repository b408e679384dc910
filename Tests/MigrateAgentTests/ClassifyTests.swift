import CUffd
import MigrateAgent
import Testing

@Suite("Backend contract: fault classification")
struct ClassifyTests {
    @Test("MINOR and RWP flags are protected faults; none or WRITE only are missing", arguments: Kernel.backends)
    func classify(kind: BackendKind) throws {
        let arena = try Arena(size: Arena.systemPageSize, name: "classify-\(kind)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        let write = CUFFD_PAGEFAULT_FLAG_WRITE
        #expect(backend.classify(flags: 0) == .missing)
        #expect(backend.classify(flags: write) == .missing)
        #expect(backend.classify(flags: CUFFD_PAGEFAULT_FLAG_MINOR) == .protected)
        #expect(backend.classify(flags: CUFFD_PAGEFAULT_FLAG_MINOR | write) == .protected)
        #expect(backend.classify(flags: CUFFD_PAGEFAULT_FLAG_RWP) == .protected)
        #expect(backend.classify(flags: CUFFD_PAGEFAULT_FLAG_RWP | write) == .protected)
    }
}
