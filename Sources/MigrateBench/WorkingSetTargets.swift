import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent

/// Issue 10's targets ("measured in the benchmark: same run, ratios") and the
/// figures shown beside them, judged on one run's working-set set: hot-first
/// against address order for the same hot-set guest, the tracker's cost as
/// the guest's throughput tracked against untracked, and the estimate against
/// the pages the guest says it touched. Stateless; pure functions of a report.
public enum WorkingSetTargets {
    public static let group = "issue 10: working set"
    /// (a) Demand faults after switch-over, hot-first over address order.
    public static let hotFirstOverAddressOrder = 0.2
    /// (b) Time until the hot set is resident, percent of the whole migration (hot-first runs).
    public static let hotSetResidentPercent = 10.0

    public static func judge(_ r: BenchReport) -> [TargetResult] {
        var rows = [demandFaults(r), hotSetDemandFaults(r), hotSetResident(r), trackerCost(r)]
        rows += estimate(r)
        if let missing = missingReason(r) {
            rows = rows.map { var t = $0; t.value = nil; t.met = nil; t.basis += " (\(missing))"; return t }
        }
        return rows
    }

    /// Why the run has no working-set figures at all, or nil.
    static func missingReason(_ r: BenchReport) -> String? {
        guard let ws = r.workingSet else { return "not measured: --working-set none" }
        if let skipped = ws.skipped { return "skipped: \(skipped)" }
        return nil
    }

    static func f(_ v: Double, _ places: Int = 1) -> String { String(format: "%.\(places)f", v) }

    /// The median as the rest of the benchmark takes it (the upper middle of an even count).
    static func median(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.sorted()[values.count / 2] }
    static func median(_ values: [Int]) -> Int? { values.isEmpty ? nil : values.sorted()[values.count / 2] }

    static func list(_ values: [Int]) -> String { values.map(String.init).joined(separator: ", ") }

    static func runs(_ r: BenchReport, _ kind: WorkingSetRun.Kind) -> [WorkingSetRun] { r.workingSet?.runs(kind) ?? [] }

    static var guest: String {
        "hot-set guest (90% of accesses to 10% of pages), \(BenchRunner.workingSetDestinationThreads) destination threads"
    }

    // MARK: (a) Demand faults, hot-first against address order

    static func demandFaults(_ r: BenchReport) -> TargetResult {
        let hot = runs(r, .hotFirst), plain = runs(r, .addressOrder)
        var t = TargetResult(id: "hot-first-demand-faults",
                             target: "\(guest): demand faults after switch-over with hot-first order at most 1/5 of address order",
                             basis: "pages the destination fetched on demand after switch-over (demandPages), median of "
                                 + "\(hot.count) hot-first runs / median of \(plain.count) address-order runs",
                             value: nil, limit: hotFirstOverAddressOrder, unit: "×")
        guard let a = median(hot.map(\.demandPages)), let b = median(plain.map(\.demandPages)), b > 0 else {
            if !hot.isEmpty, !plain.isEmpty { t.basis += " (no address-order run faulted)" }
            return t
        }
        t.value = (Double(a) / Double(b)).rounded(toPlaces: 2)
        t.met = t.value! <= hotFirstOverAddressOrder
        let guestCounts = { (runs: [WorkingSetRun]) in runs.compactMap(\.guestDemandFaults) }
        t.context = "demand pages hot-first \(list(hot.map(\.demandPages))) against address order \(list(plain.map(\.demandPages)))"
            + " (the destination guest's own count of its demand faults: \(list(guestCounts(hot))) against "
            + "\(list(guestCounts(plain)))); of them hot-set pages: \(list(hot.map(\.hotSetDemandFaults))) against "
            + "\(list(plain.map(\.hotSetDemandFaults))) (hot sets of \(list(hot.map(\.hotSetPages)))"
            + " and \(list(plain.map(\.hotSetPages))) pages); the rest are the guest's 10% accesses to any of its pages, "
            + "which no order of the stream predicts"
        return t
    }

    /// Context figure: the hot-set pages the guest still faulted on, hot-first against address order.
    static func hotSetDemandFaults(_ r: BenchReport) -> TargetResult {
        let hot = runs(r, .hotFirst), plain = runs(r, .addressOrder)
        var t = TargetResult.figure(id: "hot-set-demand-faults",
                                    target: "\(guest): hot-set pages faulted on demand, hot-first against address order",
                                    basis: "the destination's hotSetDemandFaults (announced hot pages it fetched on demand), median of "
                                        + "\(hot.count) hot-first runs / median of \(plain.count) address-order runs", unit: "×")
        guard let a = median(hot.map(\.hotSetDemandFaults)), let b = median(plain.map(\.hotSetDemandFaults)) else { return t }
        if b > 0 { t.value = (Double(a) / Double(b)).rounded(toPlaces: 3) }
        t.context = "hot-set pages on demand: hot-first \(list(hot.map(\.hotSetDemandFaults))) (median \(a)) against address "
            + "order \(list(plain.map(\.hotSetDemandFaults))) (median \(b)), of hot sets of \(median(hot.map(\.hotSetPages)) ?? 0) "
            + "and \(median(plain.map(\.hotSetPages)) ?? 0) pages (medians)"
        return t
    }

    // MARK: (b) Hot set resident

    static func hotSetResident(_ r: BenchReport) -> TargetResult {
        let hot = runs(r, .hotFirst), plain = runs(r, .addressOrder)
        var t = TargetResult(id: "hot-set-resident",
                             target: "\(guest): hot set resident within \(f(hotSetResidentPercent, 0))% of the whole migration (hot-first)",
                             basis: "hot-first runs: from switch-over until every announced hot page was present "
                                 + "(hotSetResidentMillis) / the destination's whole migration (connect until every page "
                                 + "present), median of \(hot.count) runs",
                             value: nil, limit: hotSetResidentPercent, unit: "%")
        let timed = hot.filter { $0.hotSetResidentMillis != nil && $0.elapsedSeconds > 0 }
        guard !timed.isEmpty else {
            if !hot.isEmpty { t.basis += " (no hot-first run had a hot set that became resident)" }
            return t
        }
        let percents = timed.map { $0.hotSetResidentMillis! / ($0.elapsedSeconds * 1000) * 100 }
        t.value = median(percents)!.rounded(toPlaces: 1)
        t.met = t.value! <= hotSetResidentPercent
        t.context = "hot-first: " + timed.map { run in
            "\(f(run.hotSetResidentMillis!, 0)) ms of \(f(run.elapsedSeconds * 1000, 0)) ms"
                + (run.hotSetResidentWithPages.map { " (\($0) pages present then, hot set \(run.hotSetPages))" } ?? "")
        }.joined(separator: ", ")
        if timed.count < hot.count { t.context! += "; \(hot.count - timed.count) hot-first runs never had the whole hot set resident" }
        let plainPercents = plain.compactMap { run in run.hotSetResidentMillis.map { $0 / max(run.elapsedSeconds * 1000, 0.001) * 100 } }
        if let p = median(plainPercents) {
            t.context! += "; in address order: \(f(p))% (median of \(plainPercents.count))"
        }
        return t
    }

    // MARK: The tracker's cost (a figure)

    static func trackerCost(_ r: BenchReport) -> TargetResult {
        let tracked = runs(r, .trackedUnthrottled), untracked = runs(r, .untrackedUnthrottled)
        let method = r.workingSet?.method ?? "the tracker"
        var t = TargetResult.figure(id: "tracker-cost",
                                    target: "the tracker's cost to the running guest on the source: its throughput tracked against untracked",
                                    basis: "source guest's accesses per second during a warm-up tracked with \(method) / the same warm-up "
                                        + "with --access-tracking off (same guest, unthrottled, as long as the tracked one took), medians of "
                                        + "\(tracked.count) and \(untracked.count) runs", unit: "×")
        let a = tracked.compactMap { $0.workingSet?.guestAccessesPerSecond }
        let b = untracked.compactMap { $0.workingSet?.guestAccessesPerSecond }
        guard let ma = median(a), let mb = median(b), mb > 0 else {
            if !tracked.isEmpty { t.basis += " (the guest did not report its throughput)" }
            return t
        }
        t.value = (ma / mb).rounded(toPlaces: 3)
        func rates(_ v: [Double]) -> String { v.map { String(format: "%.0f", $0) }.joined(separator: ", ") }
        t.context = "\(String(format: "%.0f", ma)) accesses/s tracked (runs \(rates(a))) against \(String(format: "%.0f", mb)) "
            + "untracked (runs \(rates(b)))"
        let warmUps = { (runs: [WorkingSetRun]) in runs.compactMap { $0.workingSet?.seconds }.map { f($0) }.joined(separator: ", ") }
        t.context! += "; warm-ups of \(warmUps(tracked)) s tracked and \(warmUps(untracked)) s untracked"
            + " (asked: \(f(r.workingSet?.warmUpSeconds ?? 0)) s; a scan slower than the interval stretches a tracked one, "
            + "and each untracked one lasts as long as the tracked one before it)"
        for run in tracked {
            guard let ws = run.workingSet, let c = ws.costs, ws.seconds > 0 else { continue }
            let faults = ws.method == AccessTrackingMethod.rwpAsync.rawValue
                ? "faults not counted (the kernel resolves RWP async faults without a message)"
                : "\(c.faults) faults (\(String(format: "%.0f", Double(c.faults) / ws.seconds))/s), handler "
                    + "\(f(Double(c.handlerNanos) / 1e6)) ms"
            t.context! += "; tracked run \(run.repetition) (\(ws.samplePercent)% of the pages watched per interval): \(faults), "
                + "\(c.scans) scans taking \(f(Double(c.scanNanos) / 1e6)) ms in all"
                + (c.guestBlockedNanos.map { ", guest blocked \(f(Double($0) / 1e6)) ms" } ?? "")
        }
        let ordered = (runs(r, .hotFirst) + runs(r, .addressOrder)).compactMap { $0.workingSet?.guestAccessesPerSecond }
        if let m = median(ordered), let rate = r.workingSet?.guestAccessRate, rate > 0 {
            t.context! += "; in the order runs, where the guest asks for \(rate) accesses/s, it did \(String(format: "%.0f", m)) "
                + "tracked (median)"
        }
        return t
    }

    // MARK: The estimate against the truth (figures)

    static func estimate(_ r: BenchReport) -> [TargetResult] {
        let ordered = runs(r, .hotFirst) + runs(r, .addressOrder)
        let fast = runs(r, .trackedUnthrottled)
        let method = r.workingSet?.method ?? "the tracker"
        return [("recall", "share of the pages the guest touched in an interval that the tracker reported", \WorkingSetReport.recall),
                ("precision", "share of the pages the tracker reported that the guest touched", \WorkingSetReport.precision)]
            .map { name, what, key in
                var t = TargetResult.figure(id: "working-set-\(name)", target: "working-set estimate against the truth: \(name)",
                                            basis: "\(what) (\(method), every interval of the warm-up), median of the "
                                                + "\(ordered.count) hot-first and address-order runs", unit: "")
                let values = ordered.compactMap { $0.workingSet?[keyPath: key] }
                guard let m = median(values) else {
                    if !ordered.isEmpty { t.basis += " (the guest did not report what it touched)" }
                    return t
                }
                t.value = m.rounded(toPlaces: 3)
                func l(_ v: [Double]) -> String { v.map { f($0, 3) }.joined(separator: ", ") }
                t.context = "\(name) \(l(values)) at \(r.workingSet?.guestAccessRate ?? 0) accesses/s"
                    + (fast.isEmpty ? "" : "; unthrottled: \(l(fast.compactMap { $0.workingSet?[keyPath: key] }))")
                let sizes = ordered.compactMap { $0.workingSet?.estimatedWorkingSetPages }
                if let size = median(sizes) { t.context! += "; estimated working set \(size) pages (median)" }
                return t
            }
    }
}
