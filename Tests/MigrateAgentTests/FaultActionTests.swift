import MigrateAgent
import Testing

/// The destination's decision for every (tracker state, fault kind, backend) combination:
/// 7 page states × 2 fault kinds × 2 backend families = 28 rows, each with its expected action.
/// The table is written out by hand from what each state and kind mean; it is never computed
/// with `FaultAction.decide`.
@Suite("fault decisions")
struct FaultActionTests {
    struct Row: Sendable, CustomTestStringConvertible {
        let state: PageState
        let kind: FaultKind
        /// true: minor, rwp (protect in place); false: missing (drops protected pages).
        let keepsStaleCopy: Bool
        let expected: FaultAction

        var testDescription: String {
            "\(state) + \(kind) fault, \(keepsStaleCopy ? "keeps stale copy (minor, rwp)" : "drops stale pages (missing)") -> \(expected)"
        }
    }

    /// Every page state. `everyStateAndKindIsListed` fails when PageState gains a case not listed here.
    static let states: [PageState] = [.absent, .requested, .present, .stale, .staleRequested, .removed, .arriving]
    /// Every fault kind. The switch in `everyStateAndKindIsListed` stops compiling when FaultKind gains one.
    static let kinds: [FaultKind] = [.missing, .protected]

    static let table: [Row] = [
        // A backend that protects in place (minor, rwp): a stale page is still mapped and
        // faults as protected.
        Row(state: .absent, kind: .missing, keepsStaleCopy: true, expected: .requestAbsent),
        // A protected fault on a page never received contradicts the tracker.
        Row(state: .absent, kind: .protected, keepsStaleCopy: true, expected: .disagreement),
        // A request is on its way: whatever the fault, it waits on that request's fresh bytes.
        Row(state: .requested, kind: .missing, keepsStaleCopy: true, expected: .shareRequest),
        Row(state: .requested, kind: .protected, keepsStaleCopy: true, expected: .shareRequest),
        // Installed after the fault was queued: only the wake is left.
        Row(state: .present, kind: .missing, keepsStaleCopy: true, expected: .wakeLate),
        // The COPY-in-flight race: map what is held, never fetch again (the guest may have
        // written the page since).
        Row(state: .present, kind: .protected, keepsStaleCopy: true, expected: .mapHeld),
        // A kept stale page cannot fault as missing.
        Row(state: .stale, kind: .missing, keepsStaleCopy: true, expected: .disagreement),
        // The held copy's hash goes with the request (the source may answer "unchanged").
        Row(state: .stale, kind: .protected, keepsStaleCopy: true, expected: .requestStale(withHash: true)),
        Row(state: .staleRequested, kind: .missing, keepsStaleCopy: true, expected: .shareRequest),
        Row(state: .staleRequested, kind: .protected, keepsStaleCopy: true, expected: .shareRequest),
        // Given back by the guest (UFFD_EVENT_REMOVE): zeros whatever the fault says, never
        // the source's bytes.
        Row(state: .removed, kind: .missing, keepsStaleCopy: true, expected: .zeroFill),
        Row(state: .removed, kind: .protected, keepsStaleCopy: true, expected: .zeroFill),
        // With the background installer: its UFFDIO_COPY wakes the fault. With shmem the
        // page is in the page cache before it is mapped, so the fault may say protected.
        Row(state: .arriving, kind: .missing, keepsStaleCopy: true, expected: .shareRequest),
        Row(state: .arriving, kind: .protected, keepsStaleCopy: true, expected: .shareRequest),

        // A backend that drops protected pages (missing): a stale page is gone and faults as
        // missing; there is no held copy, so no hash.
        Row(state: .absent, kind: .missing, keepsStaleCopy: false, expected: .requestAbsent),
        Row(state: .absent, kind: .protected, keepsStaleCopy: false, expected: .disagreement),
        Row(state: .requested, kind: .missing, keepsStaleCopy: false, expected: .shareRequest),
        Row(state: .requested, kind: .protected, keepsStaleCopy: false, expected: .shareRequest),
        Row(state: .present, kind: .missing, keepsStaleCopy: false, expected: .wakeLate),
        Row(state: .present, kind: .protected, keepsStaleCopy: false, expected: .mapHeld),
        Row(state: .stale, kind: .missing, keepsStaleCopy: false, expected: .requestStale(withHash: false)),
        // A dropped stale page cannot fault as protected.
        Row(state: .stale, kind: .protected, keepsStaleCopy: false, expected: .disagreement),
        Row(state: .staleRequested, kind: .missing, keepsStaleCopy: false, expected: .shareRequest),
        Row(state: .staleRequested, kind: .protected, keepsStaleCopy: false, expected: .shareRequest),
        Row(state: .removed, kind: .missing, keepsStaleCopy: false, expected: .zeroFill),
        Row(state: .removed, kind: .protected, keepsStaleCopy: false, expected: .zeroFill),
        Row(state: .arriving, kind: .missing, keepsStaleCopy: false, expected: .shareRequest),
        Row(state: .arriving, kind: .protected, keepsStaleCopy: false, expected: .shareRequest),
    ]

    @Test("decides the expected action", arguments: table)
    func decides(_ row: Row) {
        #expect(FaultAction.decide(state: row.state, kind: row.kind, keepsStaleCopy: row.keepsStaleCopy) == row.expected)
    }

    /// Preallocated minor memory (`destination --preallocate`): a page that never arrived
    /// is in the page cache too, so it faults as protected. Only the absent rows change.
    @Test("preallocated memory: an absent page faults as protected; every other state as without preallocation")
    func preallocated() {
        #expect(FaultAction.decide(state: .absent, kind: .protected, keepsStaleCopy: true, absentKind: .protected) == .requestAbsent)
        // Nothing of a preallocated arena is a hole: a missing fault contradicts the tracker.
        #expect(FaultAction.decide(state: .absent, kind: .missing, keepsStaleCopy: true, absentKind: .protected) == .disagreement)
        for row in Self.table where row.keepsStaleCopy && row.state != .absent {
            #expect(FaultAction.decide(state: row.state, kind: row.kind, keepsStaleCopy: true, absentKind: .protected) == row.expected,
                    "\(row.state) + \(row.kind)")
        }
    }

    @Test("the table has every (state, kind, backend) combination exactly once")
    func tableIsExhaustive() {
        var seen: [String: Int] = [:]
        for row in Self.table { seen["\(row.state) \(row.kind) \(row.keepsStaleCopy)", default: 0] += 1 }
        for state in Self.states {
            for kind in Self.kinds {
                for keeps in [true, false] {
                    #expect(seen["\(state) \(kind) \(keeps)"] == 1, "\(state) \(kind) keepsStaleCopy: \(keeps)")
                }
            }
        }
        #expect(Self.table.count == Self.states.count * Self.kinds.count * 2)
    }

    @Test("every PageState and FaultKind is listed")
    func everyStateAndKindIsListed() {
        // PageState is a UInt8 enum numbered from 0: a state past the listed ones would decode.
        #expect(Set(Self.states.map(\.rawValue)) == Set(0..<UInt8(Self.states.count)))
        #expect(PageState(rawValue: UInt8(Self.states.count)) == nil, "PageState has a case not in `states`")
        // FaultKind has no numbering to check: this switch has no default, so a new kind
        // stops the tests compiling until it is added here and to `kinds`.
        func listed(_ kind: FaultKind) -> Bool {
            switch kind {
            case .missing, .protected: return Self.kinds.contains(kind)
            }
        }
        #expect(listed(.missing) && listed(.protected))
    }
}
