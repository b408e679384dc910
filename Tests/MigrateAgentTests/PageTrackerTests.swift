import MigrateAgent
import SyntheticGuest
import Testing

@Suite("PageTracker")
struct PageTrackerTests {
    @Test("starts with every page absent")
    func initial() {
        let tracker = PageTracker(pageCount: 8)
        #expect((0..<8).allSatisfy { tracker.state($0) == .absent })
        #expect(tracker.presentCount == 0)
        #expect(tracker.staleCount == 0)
        #expect(tracker.missingCount == 8)
        #expect(!tracker.isComplete)
        #expect(!(0..<8).contains { tracker.wasDemandFetched($0) })
    }

    @Test("transitions keep presentCount and staleCount right")
    func transitions() {
        let tracker = PageTracker(pageCount: 4)
        func counts() -> (Int, Int) { (tracker.presentCount, tracker.staleCount) }

        tracker.set(0, .requested)
        #expect(tracker.state(0) == .requested)
        #expect(counts() == (0, 0))
        tracker.set(0, .present)
        #expect(counts() == (1, 0))
        tracker.set(0, .present)  // a page arriving twice counts once
        #expect(counts() == (1, 0))
        tracker.set(0, .stale)
        #expect(counts() == (0, 1))
        tracker.set(0, .staleRequested)
        #expect(tracker.state(0) == .staleRequested)
        #expect(counts() == (0, 1))
        tracker.set(0, .stale)
        #expect(counts() == (0, 1))
        tracker.set(0, .present)
        #expect(counts() == (1, 0))
        tracker.set(1, .present)
        tracker.set(2, .stale)
        #expect(counts() == (2, 1))
        #expect(tracker.missingCount == 2)
        tracker.set(1, .absent)
        #expect(counts() == (1, 1))
        for page in 0..<4 { tracker.set(page, .present) }
        #expect(counts() == (4, 0))
        #expect(tracker.isComplete)
        #expect(tracker.missingCount == 0)
    }

    @Test("random transitions match a model of the counters")
    func randomTransitions() {
        let states: [PageState] = [.absent, .requested, .present, .stale, .staleRequested]
        let tracker = PageTracker(pageCount: 64)
        var model = [PageState](repeating: .absent, count: 64)
        var random = SplitMix64(seed: 0x5EED)  // the library's seeded generator, so failures reproduce
        for step in 0..<5_000 {
            let page = Int(random.next() % 64)
            let state = states[Int(random.next() % UInt64(states.count))]
            tracker.set(page, state, demand: random.next() % 2 == 0)
            model[page] = state
            let present = model.filter { $0 == .present }.count
            let stale = model.filter { $0 == .stale || $0 == .staleRequested }.count
            guard tracker.presentCount == present, tracker.staleCount == stale, tracker.state(page) == state else {
                Issue.record("step \(step): tracker \(tracker.presentCount)/\(tracker.staleCount), model \(present)/\(stale)")
                return
            }
        }
    }

    @Test("the demand flag marks pages that answered a fault and survives state changes")
    func demandFlag() {
        let tracker = PageTracker(pageCount: 4)
        tracker.set(0, .requested)
        tracker.set(0, .present, demand: true)
        tracker.set(1, .present)
        #expect(tracker.wasDemandFetched(0))
        #expect(!tracker.wasDemandFetched(1))
        #expect(!tracker.wasDemandFetched(2))
        // The flag is beside the state: the state reads back unchanged and counts stay right.
        #expect(tracker.state(0) == .present)
        #expect(tracker.presentCount == 2)
        tracker.set(0, .stale)
        #expect(tracker.state(0) == .stale)
        #expect(tracker.wasDemandFetched(0))
        #expect(tracker.staleCount == 1)
        // A later arrival that answered no fault (the background stream) clears it.
        tracker.set(0, .present)
        #expect(!tracker.wasDemandFetched(0))
    }
}
