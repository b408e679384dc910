import Dispatch
import MigrateAgent

/// `migrate-agent selftest`: the protection-backend contract run with real
/// page faults against the running kernel, as library code, so that it works
/// where `swift test` cannot (a VM that only gets the release binary). The one
/// implementation of the contract: `swift test` runs the same checks through
/// `run(_:on:)` (Tests/BackendContractTests).
///
/// Every check gets its own arena and backend; guest memory is touched only by
/// threads the check creates; the calling thread resolves faults and never
/// touches guest memory; every wait has a deadline, after which the backend
/// is released so no thread stays blocked, and the check fails.
public struct SelfTest {
    public let probe: KernelProbe
    public let configuration: SelfTestConfiguration

    public init(probe: KernelProbe, configuration: SelfTestConfiguration) {
        self.probe = probe
        self.configuration = configuration
    }

    /// The backends the configuration selects on this kernel; throws when a forced one is missing.
    public func backends() throws(AgentError) -> [BackendKind] {
        guard SelfTestConfiguration.threadLimit.contains(configuration.threads) else {
            throw .invalidArgument("--threads must be in \(SelfTestConfiguration.threadLimit), not \(configuration.threads)")
        }
        guard configuration.timeoutSeconds > 0 else { throw .invalidArgument("--timeout must be positive") }
        return try configuration.selection.backends(on: probe)
    }

    /// Runs every check on each of `backends`, handing each result to
    /// `onResult` as soon as it is known, and returns them all.
    public func run(_ backends: [BackendKind], onResult: (SelfTestResult) -> Void = { _ in }) -> [SelfTestResult] {
        var results: [SelfTestResult] = []
        for kind in backends {
            let context = CheckContext(kind: kind, threads: configuration.threads, timeoutSeconds: configuration.timeoutSeconds)
            for check in SelfTestCheck.cases(for: kind) {
                let result = Self.run(check, context)
                results.append(result)
                onResult(result)
            }
        }
        return results
    }

    /// The access-tracking methods the configuration selects on this kernel; throws when a forced one is missing.
    public func trackers() throws(AgentError) -> [AccessTrackingMethod] {
        try configuration.trackers.methods(on: probe)
    }

    /// Runs the access-tracker check for each of `methods`, handing each result to `onResult`.
    public func run(trackers methods: [AccessTrackingMethod],
                    onResult: (AccessTrackerResult) -> Void = { _ in }) -> [AccessTrackerResult] {
        methods.map { method in
            let result = run(tracker: method)
            onResult(result)
            return result
        }
    }

    /// Runs the access-tracker check for one method (MigrateAgentTests and the selftest).
    public func run(tracker method: AccessTrackingMethod) -> AccessTrackerResult {
        let start = DispatchTime.now().uptimeNanoseconds
        var findings = Findings()
        var summary = ""
        do {
            summary = try AccessTrackerCheck(method: method, threads: configuration.threads,
                                             timeoutSeconds: configuration.timeoutSeconds).run(&findings)
        } catch {
            findings.add(error.description)
        }
        let millis = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        return AccessTrackerResult(tracker: method, passed: findings.isEmpty,
                                   detail: findings.isEmpty ? "\(summary) (\(String(format: "%.0f ms", millis)))" : findings.summary())
    }

    /// Runs one check on one backend (BackendContractTests runs each as a test case).
    public func run(_ check: SelfTestCheck, on kind: BackendKind) -> SelfTestResult {
        Self.run(check, CheckContext(kind: kind, threads: configuration.threads, timeoutSeconds: configuration.timeoutSeconds))
    }

    private static func run(_ check: SelfTestCheck, _ context: CheckContext) -> SelfTestResult {
        let start = DispatchTime.now().uptimeNanoseconds
        var findings = Findings()
        var summary = ""
        do {
            switch check {
            case .classify: summary = try ClassifyCheck(context: context).run(&findings)
            case .absentPages: summary = try AbsentPagesCheck(context: context).run(&findings)
            case .alreadyPresent: summary = try AlreadyPresentCheck(context: context).run(&findings)
            case .stalePages: summary = try StalePagesCheck(context: context).run(&findings)
            case .unchangedPath: summary = try UnchangedPathCheck(context: context).run(&findings)
            case .release: summary = try ReleaseCheck(context: context).run(&findings)
            case .asyncRelease: summary = try AsyncReleaseCheck(context: context).run(&findings)
            }
        } catch {
            findings.add(error.description)
        }
        let millis = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        let took = millis < 10 ? String(format: "%.2f ms", millis) : String(format: "%.0f ms", millis)
        return SelfTestResult(backend: context.kind, check: check, passed: findings.isEmpty,
                              detail: findings.isEmpty ? "\(summary) (\(took))" : findings.summary())
    }

    /// What the self-test runs on: the kernel, its userfaultfd features and the backends.
    public func header(testing backends: [BackendKind], trackers: [AccessTrackingMethod] = []) -> [String] {
        let lacking = BackendKind.allCases.filter { !probe.isAvailable($0) }
        let trackersLacking = AccessTrackingMethod.allCases.filter { !$0.isAvailable(on: probe) }
        return [
            "kernel \(probe.kernelRelease), userfaultfd opened with \(probe.openedBy)",
            "features 0x\(String(probe.featureBits, radix: 16)): \(probe.features.joined(separator: " "))",
            "backends offered: \(probe.availableBackends.map(\.rawValue).joined(separator: ", "))"
                + lacking.map { "; not \($0.rawValue) (needs \(BackendSelection.requirement(of: $0)))" }.joined(),
            "access tracking offered: "
                + AccessTrackingMethod.allCases.filter { $0.isAvailable(on: probe) }.map(\.rawValue).joined(separator: ", ")
                + trackersLacking.map { "; not \($0.rawValue) (needs \($0.requirement))" }.joined(),
            "testing \(backends.map(\.rawValue).joined(separator: ", "))"
                + (trackers.isEmpty ? "" : " and access tracking \(trackers.map(\.rawValue).joined(separator: ", "))") + " with \(configuration.threads) guest threads, "
                + "\(configuration.timeoutSeconds) s per wait",
        ]
    }

    /// The closing line: how many checks passed.
    public static func verdict(_ results: [SelfTestResult], trackers: [AccessTrackerResult] = [], seconds: Double) -> String {
        let failed = results.filter { !$0.passed }.count + trackers.filter { !$0.passed }.count
        let total = results.count + trackers.count
        let took = String(format: "%.2f s", seconds)
        return failed == 0
            ? "selftest: all \(total) checks passed (\(took))"
            : "selftest: \(failed) of \(total) checks FAILED (\(took))"
    }
}
