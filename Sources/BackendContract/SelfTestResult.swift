import MigrateAgent

/// The checks of `migrate-agent selftest`: the protection-backend contract
/// (docs/architecture.md, "Protection backends") exercised with real faults.
public enum SelfTestCheck: String, Codable, Sendable, CaseIterable {
    /// `classify` maps fault flags to missing or protected the same way for every backend.
    case classify
    /// Absent pages faulted by several threads are installed once each, with the right bytes.
    case absentPages = "absent-pages"
    /// `installAbsent` over pages already there reports them as already present, never overwrites them.
    case alreadyPresent = "already-present"
    /// Reads and writes of protected pages block until `refresh` delivers fresh bytes.
    case stalePages = "stale-pages"
    /// `refresh(fresh: nil)` maps the held copy, or throws where the backend keeps none.
    case unchangedPath = "unchanged-path"
    /// `release()` frees threads blocked on faults nobody resolves.
    case release
    /// `rwp` only: `releaseAllAsync` (SET_MODE enabling RWP_ASYNC) frees blocked threads on the old
    /// bytes; `restoreSyncDelivery` makes protected pages trap again.
    case asyncRelease = "async-release"

    /// Whether the check applies to a backend (`async-release` is about RWP_ASYNC).
    public func applies(to kind: BackendKind) -> Bool {
        self != .asyncRelease || kind == .rwp
    }

    /// The checks that apply to a backend, in order.
    public static func cases(for kind: BackendKind) -> [SelfTestCheck] { allCases.filter { $0.applies(to: kind) } }
}

/// One check's verdict on one backend (`--json` prints an array of these).
public struct SelfTestResult: Codable, Sendable {
    public var backend: BackendKind
    public var check: SelfTestCheck
    public var passed: Bool
    /// On a pass, what was exercised and how long it took; on a failure, why.
    public var detail: String

    public init(backend: BackendKind, check: SelfTestCheck, passed: Bool, detail: String) {
        self.backend = backend
        self.check = check
        self.passed = passed
        self.detail = detail
    }

    /// `PASS backend check` or `FAIL backend check: reason`.
    public var line: String {
        passed ? "PASS \(backend.rawValue) \(check.rawValue)" : "FAIL \(backend.rawValue) \(check.rawValue): \(detail)"
    }
}
