import BackendContract
import MigrateAgent
import Testing

// The protection-backend contract, the same checks `migrate-agent selftest`
// runs (Sources/BackendContract), once per backend and check. Each check
// touches guest memory only from threads it creates, waits with deadlines and
// releases the backend (UFFDIO_UNREGISTER) on a deadline, so a fault nobody
// resolves fails its case instead of hanging the test process.
//
// Swift Testing has no per-argument condition, so each backend is a test of
// its own with the checks as arguments: a backend the kernel lacks shows as a
// skipped test with the reason, never as a test with zero cases.

/// The kernel's probe, run once for the whole test process.
enum Kernel {
    static let probe: Result<KernelProbe, UffdError> = Result { () throws(UffdError) in try KernelProbe.run() }

    /// Whether the kernel offers `kind` (false when the probe failed: `probeRuns` then fails).
    static func offers(_ kind: BackendKind) -> Bool {
        (try? probe.get())?.isAvailable(kind) ?? false
    }

    /// Why the tests of `kind` are skipped, shown in the test output.
    static func unavailable(_ kind: BackendKind) -> Comment {
        switch probe {
        case .failure(let error):
            return Comment(rawValue: "the kernel probe failed (see 'the kernel probe runs'): \(error)")
        case .success(let probe):
            return Comment(rawValue: "kernel \(probe.kernelRelease) lacks the \(kind.rawValue) backend: it needs "
                + BackendSelection.requirement(of: kind))
        }
    }

    /// Runs one contract check with the selftest's defaults (4 guest threads, 10 s per wait).
    static func check(_ check: SelfTestCheck, on kind: BackendKind) throws {
        let selfTest = SelfTest(probe: try probe.get(), configuration: SelfTestConfiguration())
        let result = selfTest.run(check, on: kind)
        #expect(result.backend == kind && result.check == check)
        #expect(result.passed, Comment(rawValue: result.line))
        if result.passed { print("BackendContractTests: \(result.line): \(result.detail)") }
    }
}

@Suite("Backend contract")
struct BackendContractTests {
    @Test("the kernel probe runs and offers a backend")
    func probeRuns() throws {
        let probe = try Kernel.probe.get()
        #expect(!probe.availableBackends.isEmpty, "kernel \(probe.kernelRelease) offers no protection backend")
        let lacking = BackendKind.allCases.filter { !probe.isAvailable($0) }
        print("BackendContractTests: kernel \(probe.kernelRelease) offers "
            + probe.availableBackends.map(\.rawValue).joined(separator: ", ")
            + lacking.map { "; not \($0.rawValue) (needs \(BackendSelection.requirement(of: $0)))" }.joined())
    }

    @Test("rwp backend", .enabled(if: Kernel.offers(.rwp), Kernel.unavailable(.rwp)), arguments: SelfTestCheck.cases(for: .rwp))
    func rwp(check: SelfTestCheck) throws { try Kernel.check(check, on: .rwp) }

    @Test("minor backend", .enabled(if: Kernel.offers(.minor), Kernel.unavailable(.minor)), arguments: SelfTestCheck.cases(for: .minor))
    func minor(check: SelfTestCheck) throws { try Kernel.check(check, on: .minor) }

    @Test("missing backend", .enabled(if: Kernel.offers(.missing), Kernel.unavailable(.missing)),
          arguments: SelfTestCheck.cases(for: .missing))
    func missing(check: SelfTestCheck) throws { try Kernel.check(check, on: .missing) }
}
