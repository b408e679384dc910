import MigrateAgent
import Testing

/// Whether this kernel offers userfaultfd RWP. A probe that fails counts as "no RWP", so the
/// tests that need the probe still run and report the failure rather than being skipped.
private let kernelHasRWP = (try? KernelProbe.run())?.isAvailable(.rwp) ?? false

@Suite("Kernel probe")
struct KernelProbeTests {
    @Test("runs and reports MISSING_SHMEM")
    func runs() throws {
        let probe = try KernelProbe.run()
        #expect(!probe.kernelRelease.isEmpty)
        #expect(probe.shmemMissing)
        #expect(probe.features.contains("MISSING_SHMEM"))
        #expect(probe.featureBits != 0)
        #expect(UffdFeatures(rawValue: probe.featureBits).names == probe.features)
        #expect(probe.readWriteProtect == probe.features.contains("RWP"))
    }

    @Test("picks the best backend the kernel has")
    func picksAvailableBackend() throws {
        let probe = try KernelProbe.run()
        #expect(probe.isAvailable(probe.backend))
        #expect(probe.availableBackends.contains(probe.backend))
        #expect(probe.availableBackends.contains(.missing))
        // allCases runs best first: rwp, minor, missing.
        #expect(probe.backend == probe.availableBackends.first)
        #expect(probe.isAvailable(.rwp) == probe.readWriteProtect)
        #expect(probe.isAvailable(.minor) == probe.shmemMinor)
    }

    @Test("select(nil) is the probe's backend; an available backend selects itself")
    func selectAuto() throws {
        let probe = try KernelProbe.run()
        #expect(try probe.select(nil) == probe.backend)
        for kind in probe.availableBackends {
            #expect(try probe.select(kind) == kind)
        }
    }

    @Test(
        "select(.rwp) without RWP throws an error naming the available backends",
        .enabled(if: !kernelHasRWP, "this kernel has userfaultfd RWP, so select(.rwp) has no error to check")
    )
    func selectRWPUnavailable() throws {
        let probe = try KernelProbe.run()
        do {
            _ = try probe.select(.rwp)
            Issue.record("select(.rwp) succeeded on a kernel without RWP")
        } catch AgentError.unsupported(let message) {
            #expect(message.contains("'rwp'"), "\(message)")
            #expect(message.contains(probe.kernelRelease), "\(message)")
            let available = probe.availableBackends.map(\.rawValue).joined(separator: ", ")
            #expect(message.contains("(available: \(available))"), "\(message)")
        } catch {
            Issue.record("expected AgentError.unsupported, got \(error)")
        }
    }

    @Test("makeBackend for a backend the kernel lacks fails cleanly")
    func makeUnavailableBackend() throws {
        let probe = try KernelProbe.run()
        let arena = try Arena(size: 4 * Arena.systemPageSize, name: "probe-test")
        for kind in BackendKind.allCases where !probe.isAvailable(kind) {
            #expect(throws: AgentError.self, "\(kind)") { _ = try makeBackend(kind, arena: arena) }
        }
        // The arena is left unregistered: the best backend still registers it.
        let backend = try makeBackend(probe.backend, arena: arena)
        #expect(backend.kind == probe.backend)
        backend.release()
    }
}
