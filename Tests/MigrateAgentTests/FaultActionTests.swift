import MigrateAgent
import Testing

/// The destination's decision for every (tracker state, fault kind, backend) combination.
@Suite("fault decisions")
struct FaultActionTests {
    @Test("a backend that protects in place (minor, rwp)")
    func protectsInPlace() {
        func decide(_ s: PageState, _ k: FaultKind) -> FaultAction { .decide(state: s, kind: k, keepsStaleCopy: true) }
        #expect(decide(.absent, .missing) == .requestAbsent)
        #expect(decide(.stale, .protected) == .requestStale(withHash: true))
        #expect(decide(.requested, .missing) == .shareRequest)
        #expect(decide(.staleRequested, .protected) == .shareRequest)
        #expect(decide(.present, .missing) == .wakeLate)
        // A protected fault on a present page is the COPY-in-flight race: map what is held,
        // never fetch again (the guest may have written the page since).
        #expect(decide(.present, .protected) == .mapHeld)
        // Contradictions: a protected fault on an absent page, a missing one on a stale page.
        #expect(decide(.absent, .protected) == .disagreement)
        #expect(decide(.stale, .missing) == .disagreement)
    }

    @Test("a backend that drops protected pages (missing)")
    func dropsPages() {
        func decide(_ s: PageState, _ k: FaultKind) -> FaultAction { .decide(state: s, kind: k, keepsStaleCopy: false) }
        #expect(decide(.absent, .missing) == .requestAbsent)
        #expect(decide(.stale, .missing) == .requestStale(withHash: false))
        #expect(decide(.stale, .protected) == .disagreement)
        #expect(decide(.present, .protected) == .mapHeld)
        #expect(decide(.requested, .protected) == .shareRequest)
    }
}
