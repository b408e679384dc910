import MigrateAgent

/// What `migrate-agent selftest` runs.
public struct SelfTestConfiguration: Sendable {
    /// Which backends to check.
    public var selection = BackendSelection.all
    /// Which access trackers to check (`--access-tracking`).
    public var trackers = AccessTrackerSelection.all
    /// Guest threads per check.
    public var threads = 4
    /// Seconds any single wait may take (for a fault, for guest threads) before the check fails.
    public var timeoutSeconds = 10.0

    public static let threadLimit = 1...64

    public init() {}
}

/// `--protection rwp|minor|missing|auto|all`.
public enum BackendSelection: Sendable, Equatable {
    /// Every backend the kernel offers.
    case all
    /// The backend the agent would pick (`--protection auto` elsewhere).
    case auto
    /// One backend; an error when the kernel lacks it.
    case only(BackendKind)

    public init?(argument: String) {
        switch argument {
        case "all": self = .all
        case "auto": self = .auto
        default:
            guard let kind = BackendKind(rawValue: argument) else { return nil }
            self = .only(kind)
        }
    }

    public static let argumentNames = BackendKind.allCases.map(\.rawValue) + ["auto", "all"]

    /// The backends to check on the probed kernel.
    public func backends(on probe: KernelProbe) throws(AgentError) -> [BackendKind] {
        switch self {
        case .all:
            let available = probe.availableBackends
            guard !available.isEmpty else {
                throw .unsupported("no protection backend is available on kernel \(probe.kernelRelease) "
                    + "(userfaultfd on shmem, UFFD_FEATURE_MISSING_SHMEM, is missing)")
            }
            return available
        case .auto:
            return [try probe.select(nil)]
        case .only(let kind):
            do {
                return [try probe.select(kind)]
            } catch {
                throw .unsupported("\(error.description); \(kind.rawValue) needs \(Self.requirement(of: kind))")
            }
        }
    }

    /// What the kernel must offer for a backend.
    public static func requirement(of kind: BackendKind) -> String {
        switch kind {
        case .rwp: "userfaultfd read-write protection (UFFD_FEATURE_RWP), Linux 7.3 or later"
        case .minor: "shmem minor faults (UFFD_FEATURE_MINOR_SHMEM), Linux 5.13 or later"
        case .missing: "userfaultfd on shmem (UFFD_FEATURE_MISSING_SHMEM)"
        }
    }
}

/// `--access-tracking rwp-async|minor-sampling|all|none`.
public enum AccessTrackerSelection: Sendable, Equatable {
    /// Every method the kernel offers (none is an empty list, not an error: the backends still get checked).
    case all
    case none
    /// One method; an error when the kernel lacks it.
    case only(AccessTrackingMethod)

    public init?(argument: String) {
        switch argument {
        case "all": self = .all
        case "none": self = .none
        default:
            guard let method = AccessTrackingMethod(rawValue: argument) else { return nil }
            self = .only(method)
        }
    }

    public static let argumentNames = AccessTrackingMethod.allCases.map(\.rawValue) + ["all", "none"]

    /// The methods to check on the probed kernel.
    public func methods(on probe: KernelProbe) throws(AgentError) -> [AccessTrackingMethod] {
        switch self {
        case .all: AccessTrackingMethod.allCases.filter { $0.isAvailable(on: probe) }
        case .none: []
        case .only(let method): [try AccessTrackingMethod.select(requested: method, probe: probe)]
        }
    }
}
