import Dispatch
import MigrateAgent

/// What every check of one backend shares: the backend kind, the number of
/// guest threads and the deadline of each wait.
struct CheckContext {
    let kind: BackendKind
    let threads: Int
    let timeoutSeconds: Double

    /// The flags this backend's faults must carry.
    var flags: FaultFlagRule { FaultFlagRule(kind: kind) }

    /// Whether this backend must keep a protected page's old bytes (docs/architecture.md, "Protection backends": `rwp`, `minor`).
    var keepsHeldCopy: Bool { kind != .missing }

    /// The deadline of a wait that starts now.
    func deadline() -> DispatchTime { .now() + timeoutSeconds }

    /// A new arena of `pages` pages with a backend of this kind registered over it.
    /// The caller must `release()` the backend before the arena goes (unmapping a
    /// registered range was seen to block).
    func makeBackend(pages: Int, for check: SelfTestCheck) throws(AgentError) -> any ProtectionBackend {
        let arena = try Arena(size: pages * Arena.systemPageSize, name: "selftest-\(kind.rawValue)-\(check.rawValue)")
        let backend = try MigrateAgent.makeBackend(kind, arena: arena)
        guard backend.kind == kind else {
            backend.release()
            throw .migrationFailed("makeBackend(\(kind.rawValue)) made a \(backend.kind.rawValue) backend")
        }
        return backend
    }

    /// Calls `backend.protect`, released by a watchdog if it blocks; false when it had to be.
    func protect(_ pages: Range<Int>, on backend: any ProtectionBackend, findings: inout Findings) throws(AgentError) -> Bool {
        try BoundedCall(backend: backend, timeoutSeconds: timeoutSeconds)
            .run("protect(first: \(pages.lowerBound), count: \(pages.count))", findings: &findings) { () throws(AgentError) in
                try backend.protect(first: pages.lowerBound, count: pages.count)
            }
    }

    /// Calls `backend.activate`, released by a watchdog if it blocks; false when it had to be.
    func activate(_ pages: Range<Int>, on backend: any ProtectionBackend, findings: inout Findings) throws(AgentError) -> Bool {
        try BoundedCall(backend: backend, timeoutSeconds: timeoutSeconds)
            .run("activate(first: \(pages.lowerBound), count: \(pages.count))", findings: &findings) { () throws(AgentError) in
                try backend.activate(first: pages.lowerBound, count: pages.count)
            }
    }

    /// Guest threads named after this backend and check.
    func guests(for check: SelfTestCheck, plans: [[GuestTouch]], arena: Arena) -> GuestThreadGroup {
        GuestThreadGroup(label: "selftest-\(kind.rawValue)-\(check.rawValue)", plans: plans, arena: arena)
    }
}
