import MigrateAgent
import Testing

@Suite("Working-set scores")
struct WorkingSetScoresTests {
    @Test("each interval halves a score and sets the top bit of pages accessed in it")
    func aging() {
        var scores = WorkingSetScores(pageCount: 4)
        scores.record(accessed: [0, 1])
        scores.record(accessed: [1, 2])
        scores.record(accessed: [1, 1, 99, -1])  // duplicates once, out of range ignored
        #expect(scores.scores == [0x20, 0xE0, 0x40, 0])
        #expect(scores.series == [2, 2, 1])
        #expect(scores.intervals == 3)
    }

    @Test("hot-first order: highest score first, ties by ascending page, unseen pages left out")
    func hotFirst() {
        var scores = WorkingSetScores(pageCount: 8)
        scores.record(accessed: [5, 6])
        scores.record(accessed: [3, 6, 7])
        scores.record(accessed: [7, 1, 6])
        // 6: 0xE0, 7: 0xC0, 1: 0x80, 3: 0x40, 5: 0x20
        #expect(scores.hotFirstOrder() == [6, 7, 1, 3, 5])
        scores.record(accessed: [])
        #expect(scores.hotFirstOrder() == [6, 7, 1, 3, 5], "aging keeps the order")
        #expect(WorkingSetScores(pageCount: 3).hotFirstOrder() == [])
    }

    @Test("recency beats frequency: accessed last interval outranks accessed in every earlier one")
    func recency() {
        var scores = WorkingSetScores(pageCount: 2)
        for _ in 0..<7 { scores.record(accessed: [0]) }
        scores.record(accessed: [1])
        #expect(scores.score(of: 0) == 0x7F)
        #expect(scores.score(of: 1) == 0x80)
        #expect(scores.hotFirstOrder() == [1, 0])
    }

    @Test("hot pages by threshold, ascending")
    func hotPages() {
        var scores = WorkingSetScores(pageCount: 6)
        scores.record(accessed: [4, 2])
        scores.record(accessed: [0, 4])
        #expect(scores.hotPages(threshold: 0x80) == [0, 4])
        #expect(scores.hotPages(threshold: 0x40) == [0, 2, 4])
        #expect(scores.hotPages(threshold: 0) == [0, 2, 4], "threshold 0 still means seen")
    }

    @Test("estimated working set: pages accessed in the last n intervals")
    func estimate() {
        var scores = WorkingSetScores(pageCount: 10)
        scores.record(accessed: [0, 1, 2, 3])
        scores.record(accessed: [4])
        scores.record(accessed: [5, 0])
        #expect(scores.estimatedWorkingSet(window: 1) == 2)
        #expect(scores.estimatedWorkingSet(window: 2) == 3)
        #expect(scores.estimatedWorkingSet(window: 3) == 6)
        #expect(scores.estimatedWorkingSet() == 6)
        for _ in 0..<8 { scores.record(accessed: []) }
        #expect(scores.estimatedWorkingSet(window: 8) == 0, "forgotten after eight idle intervals")
    }
}
