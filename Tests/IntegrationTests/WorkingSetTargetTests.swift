import Foundation
import MigrateAgent
@testable import MigrateBench
import Testing

/// Issue 10's target judging, as pure functions of a hand-made `BenchReport`:
/// no agent runs here.
@Suite("bench targets of issue 10 (working set)")
struct WorkingSetTargetTests {
    @Test("hot-first against address order, residency, the tracker's cost and the estimate are judged from the same run")
    func judged() throws {
        var r = try BenchTargetTests.report()
        r.workingSet = Self.result([
            Self.run(.hotFirst, demand: 400, hot: 20, resident: 50, elapsed: 0.7, accesses: 100_000, recall: 0.98, precision: 0.99),
            Self.run(.addressOrder, demand: 2500, hot: 1300, resident: 600, elapsed: 0.7, accesses: 99_000, recall: 0.96, precision: 1),
            Self.run(.hotFirst, demand: 500, hot: 40, resident: 80, elapsed: 0.8, accesses: 100_000, recall: 0.97, precision: 0.99),
            Self.run(.addressOrder, demand: 2700, hot: 1200, resident: 650, elapsed: 0.7, accesses: 99_000, recall: 0.99, precision: 1),
            Self.run(.trackedUnthrottled, accesses: 5e6, recall: 0.9, precision: 1, faults: 100_000),
            Self.run(.untrackedUnthrottled, accesses: 16e6),
            Self.run(.trackedUnthrottled, accesses: 4e6, recall: 0.9, precision: 1, faults: 120_000),
            Self.run(.untrackedUnthrottled, accesses: 15e6),
        ])
        let targets = BenchTargets.judge(r).filter { $0.group == WorkingSetTargets.group }
        func target(_ id: String) throws -> TargetResult { try #require(targets.first { $0.id == id }, "no \(id)") }

        // Medians as the benchmark takes them (the upper middle): 500 / 2700.
        let demand = try target("hot-first-demand-faults")
        #expect(demand.value == 0.19 && demand.met == true && demand.figure == nil)
        #expect(demand.context?.contains("400, 500") == true && demand.context?.contains("20, 40") == true)
        let hot = try target("hot-set-demand-faults")
        #expect(hot.figure == true && hot.met == nil && hot.value == 0.031)  // 40 / 1300
        // 50 ms of 700 (7.1%), 80 of 800 (10%): the upper middle, 10%, is within the limit.
        let resident = try target("hot-set-resident")
        #expect(resident.value == 10 && resident.met == true && resident.unit == "%")
        let cost = try target("tracker-cost")
        #expect(cost.figure == true && cost.met == nil && cost.value == 0.313)  // 5e6 / 16e6
        #expect(cost.context?.contains("faults") == true)
        #expect(try target("working-set-recall").value == 0.98)  // of 0.96, 0.97, 0.98, 0.99
        #expect(try target("working-set-precision").value == 1)

        // Every other group still judged beside it when the run had baselines or scenarios to judge.
        r.scenarios = [try BenchTargetTests.scenario("random-1t-nobg", p50: 30, p99: 50)]
        #expect(Set(BenchTargets.judge(r).compactMap(\.group)) == ["issue 4", UnderLoadTargets.group, WorkingSetTargets.group])
        let text = BenchTable.text({ var x = r; x.targets = BenchTargets.judge(r); return x }())
        #expect(text.contains("Targets (issue 10: working set)") && text.contains("figure") && text.contains("hot-first 1"))
        let md = BenchMarkdown.results({ var x = r; x.targets = BenchTargets.judge(r); return x }(), image: "x.png")
        #expect(md.contains("***issue 10: working set***") && md.contains("### Working set (issue 10)") && md.contains("| figure |"))
    }

    @Test("misses are judged as misses, with the counts")
    func missed() throws {
        var r = try BenchTargetTests.report()
        r.workingSet = Self.result([
            Self.run(.hotFirst, demand: 2300, hot: 50, resident: 150, elapsed: 0.7),
            Self.run(.addressOrder, demand: 2400, hot: 1300, resident: 600, elapsed: 0.7),
        ])
        let targets = WorkingSetTargets.judge(r)
        let demand = try #require(targets.first { $0.id == "hot-first-demand-faults" })
        #expect(demand.met == false && demand.value == 0.96 && demand.context?.contains("2300") == true)
        let resident = try #require(targets.first { $0.id == "hot-set-resident" })
        #expect(resident.met == false && resident.value == 21.4)
        // No cost runs: the cost is not measured, and says why not.
        #expect(targets.first { $0.id == "tracker-cost" }?.value == nil)
    }

    @Test("a run alone judges only issue 10; without the figures nothing is judged, and the basis says why")
    func alone() throws {
        var r = try BenchTargetTests.report()
        r.workingSet = Self.result([Self.run(.hotFirst, demand: 1, hot: 0, resident: nil, elapsed: 0.1)])
        #expect(Set(BenchTargets.judge(r).compactMap(\.group)) == [WorkingSetTargets.group])
        #expect(WorkingSetTargets.judge(r).first { $0.id == "hot-set-resident" }?.basis.contains("no hot-first run") == true)

        r.workingSet = nil
        for t in WorkingSetTargets.judge(r) {
            #expect(t.value == nil && t.met == nil && t.basis.contains("--working-set none"), "\(t.id): \(t.basis)")
        }
        var skipped = Self.result([])
        skipped.skipped = "access tracking needs ..."
        r.workingSet = skipped
        #expect(WorkingSetTargets.judge(r).allSatisfy { $0.value == nil && $0.basis.contains("skipped: access tracking") })
        #expect(WorkingSetTargets.judge(r).count == 6)
    }

    // MARK: Hand-made figures

    static func result(_ runs: [WorkingSetRun]) -> WorkingSetResult {
        WorkingSetResult(arenaBytes: 256 << 20, warmUpSeconds: 1, intervalMillis: 100, requestedTracking: "auto",
                         method: "minor-sampling", backend: .minor, sourceGuestThreads: 4, destinationGuestThreads: 4,
                         guestAccessRate: 100_000, skipped: nil, runs: runs)
    }

    static func run(_ kind: WorkingSetRun.Kind, demand: Int = 0, hot: Int = 0, resident: Double? = nil, elapsed: Double = 0.3,
                    accesses: Double? = nil, recall: Double? = nil, precision: Double? = nil, faults: Int = 50_000) -> WorkingSetRun {
        var ws = WorkingSetReport(method: kind.tracked ? "minor-sampling" : "off", intervalMillis: 100, samplePercent: 100)
        ws.seconds = 1
        ws.guestAccessesPerSecond = accesses
        ws.recall = recall
        ws.precision = precision
        ws.estimatedWorkingSetPages = 12_000
        if kind.tracked {
            var costs = AccessTrackingCosts()
            costs.faults = faults
            costs.scans = 10
            costs.handlerNanos = 400_000_000
            ws.costs = costs
        }
        return WorkingSetRun(kind: kind, repetition: 1, workingSet: ws, streamHeadPages: 12_000, streamHeadPagesSent: 11_900,
                             demandPages: demand, guestDemandFaults: demand + 5, backgroundPages: 65_536 - demand,
                             hotSetPages: 6000, hotSetDemandFaults: hot, hotSetResidentMillis: resident,
                             hotSetResidentWithPages: resident == nil ? nil : 6200, elapsedSeconds: elapsed,
                             integrity: BenchTargetTests.intact, load: BenchTargetTests.load)
    }
}
