import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent

/// The human-readable rendering of a `BenchReport` (stdout of `migrate-agent bench`).
/// Stateless; pure functions of a report.
public enum BenchTable {
    public static func text(_ r: BenchReport) -> String {
        var out: [String] = []
        out.append("migrate-agent bench — \(r.machine.date)")
        out += machineLines(r).map { "  " + $0 }
        if let b = r.baselines {
            out.append("")
            out.append(row("Baselines (µs)", "placement", "n", "p50", "p90", "p99", "p99.9", "max", extra: "same CPU"))
            for x in [b.firstTouch] + b.userfaultfd + b.roundTrip {
                out.append(row("  " + x.id, x.placement.rawValue, "\(x.latency.count)", n(x.latency.p50), n(x.latency.p90),
                               n(x.latency.p99), n(x.latency.p999), n(x.latency.max),
                               extra: x.sameCPUFraction.map { String(format: "%.0f%%", $0 * 100) } ?? ""))
            }
            for f in b.floors {
                out.append(row("  floor = uffd-missing + rtt", f.placement.rawValue, "", n(f.p50), "", n(f.p99), "", ""))
            }
            if let end = r.floorAtEnd {
                out.append(row("  floor again at the end", end.placement.rawValue, "", n(end.p50), "", n(end.p99), "", ""))
            }
            out.append(String(format: "  loopback bulk bandwidth: %.0f MB/s best, %.0f MB/s median", b.bandwidth.best / 1e6, b.bandwidth.median / 1e6)
                + " (\(b.bandwidth.transfers.count) × \(ByteSize(bytes: b.bandwidth.bytesPerTransfer)), two processes)")
        }
        if !r.scenarios.isEmpty {
            out.append("")
            out.append("Agent scenarios: guest-timed first access of demand-fetched pages, µs (arena "
                + "\(ByteSize(bytes: r.settings.arenaBytes)), \(r.settings.repetitions) runs each, merged; "
                + "p50× and p99× are over the \(r.baselines?.floor?.placement.rawValue ?? "?") floor)")
            out.append(scenarioRow("scenario", "faults", "p50", "p90", "p99", "p99.9", "max", "faults/s", "touch s", "p50×", "p99×")
                + "  p50 of each run")
            for s in r.scenarios {
                let l = s.latency
                out.append(scenarioRow((s.busy ? "!" : " ") + s.name, "\(s.faultsMeasured)", n(l.p50), n(l.p90), n(l.p99), n(l.p999),
                                       n(l.max), String(format: "%.0f", s.faultsPerSecond), String(format: "%.2f", s.touchSeconds),
                                       ratio(s.p50OverFloor), ratio(s.p99OverFloor)) + "  " + runP50s(s))
            }
            out.append("")
            out.append("Phases of a demand fault in each scenario's median run, p50 (p99) µs: access → delivered (loop read the fault) "
                + "→ request written → page received → resolved → woken (guest runs again)")
            out.append(phaseRow("scenario", "delivered", "written", "received", "resolved", "woken", "loop total"))
            for s in r.scenarios {
                guard let p = s.phases, p.total.count > 0 else {
                    out.append(phaseRow(" " + s.name, "no demand faults", "", "", "", "", ""))
                    continue
                }
                out.append(phaseRow(" " + s.name, pair(p.delivered), pair(p.requestWritten), pair(p.pageReceived), pair(p.resolved),
                                    pair(p.woken), pair(p.total)))
            }
        }
        if !r.skipped.isEmpty {
            out.append("")
            for s in r.skipped { out.append("skipped \(s.name): \(s.reason)") }
        }
        if !r.migrations.isEmpty {
            out.append("")
            out.append("Whole migration of an idle guest (background stream only; median of runs), against the loopback "
                + "bandwidth and the local install rate measured just before (UFFDIO_COPY into a fresh memfd, no network)")
            for m in r.migrations {
                out.append("  " + pad(ByteSize(bytes: m.arenaBytes).description, 8)
                    + String(format: "%7.3f s  %7.0f MB/s  %5.1f%% of loopback bandwidth", m.seconds, m.megabytesPerSecond,
                             (m.fractionOfLoopback ?? 0) * 100)
                    + (m.fractionOfLocalInstall.map { String(format: "  %5.1f%% of local install", $0 * 100) } ?? "")
                    + (overhead(m.destinationMemory ?? [], arena: m.arenaBytes).map { "  destination \($0)" } ?? "")
                    + (m.busy ? "  (busy)" : ""))
                if !m.preallocatedNote.isEmpty { out.append("           " + m.preallocatedNote) }
                if let install = m.localInstall {
                    for (i, p) in install.passes.enumerated() {
                        out.append("    local install pass \(i + 1): " + String(format: "%7.0f MB/s  %5.2f µs/page", p.megabytesPerSecond, p.microsPerPage)
                            + "  by quarter " + p.segmentMicrosPerPage.map { String(format: "%.2f", $0) }.joined(separator: ", ")
                            + (p.reportedFreeKiB.map { String(format: "  handed back %.0f MiB", Double($0) / 1024) } ?? "")
                            + (p.heldBytes > 0 ? "  (\(ByteSize(bytes: p.heldBytes)) filled memfd held)" : ""))
                    }
                    out.append(String(format: "    page hash: %.2f µs/page", install.hashMicrosPerPage))
                }
            }
        }
        out += underLoad(r)
        out += handlerModeLines(r)
        out += workingSetLines(r)
        out += linkLines(r)
        if !r.targets.isEmpty {
            for (group, targets) in groupedTargets(r.targets) {
                out.append("")
                out.append("Targets (\(group))")
                for t in targets {
                    let value = t.value.map { String(format: "%.2f ", $0) + t.unit } ?? "not measured"
                    let verdict = t.figure == true ? "figure" : t.met.map { $0 ? "met" : "MISSED" } ?? "—"
                    out.append("  " + pad(verdict, 7) + pad(t.target, 84) + "\(value), limit \(limit(t)) (\(t.basis))")
                    if let context = t.context { out.append("         \(context)") }
                    if let why = t.whereTheTimeGoes { out.append("         where the time goes: \(why)") }
                }
            }
        }
        if !r.warnings.isEmpty || !r.notes.isEmpty {
            out.append("")
            for w in r.warnings { out.append("WARNING: \(w)") }
            for note in r.notes { out.append("note: \(note)") }
        }
        out.append("")
        out.append(r.succeeded ? String(format: "bench: done in %.1f s", r.elapsedSeconds)
                               : "bench: FAILED: \(r.error ?? "unknown error")")
        return out.joined(separator: "\n")
    }

    /// Machine, load and contention lines, shared with the Markdown rendering.
    static func machineLines(_ r: BenchReport) -> [String] {
        let m = r.machine
        var lines = [
            "machine: \(m.cpuModel), \(m.cores) cores\(m.virtualMachine ? " (virtual machine)" : ""), "
                + "\(ByteSize(bytes: m.memoryBytes / (1 << 20) * (1 << 20))) memory, kernel \(m.kernel), backend \(r.backend.rawValue)",
            "commit: \(m.gitCommit ?? "unknown")\(m.gitDirty == true ? " (with uncommitted changes)" : "")",
            "load average before \(load(m.loadBefore)), after \(load(m.loadAfter))"
                + (r.load.map { String(format: "; other processes used %.2f cores, steal %.2f, over %.0f s", $0.otherCores, $0.stealCores, $0.seconds) } ?? ""),
            "\(m.cores) cores: the guest threads, both agents' event loops, the source's digest thread and this process "
                + "contend for them, and every hand-over between threads on different CPUs pays a cross-CPU wake-up; "
                + "agents are not pinned, baselines are shown unpinned and pinned (same-cpu, cross-cpu).",
        ]
        if m.cores > 2 { lines[3] = "\(m.cores) cores; agents are not pinned, baselines are shown unpinned and pinned." }
        if let order = m.freePageReportingOrder {
            lines.append("memory: the guest hands freed memory back to the host (virtio-balloon free page reporting, "
                + "blocks of \(ByteSize(bytes: (1 << order) * Arena.systemPageSize))); the host backs it again only when it is "
                + "touched again, so installing into memory not used lately is slower (see the local install rate)")
        }
        return lines
    }

    /// Targets by group, in order of first appearance (reports from before the groups: issue 4).
    static func groupedTargets(_ targets: [TargetResult]) -> [(String, [TargetResult])] {
        var groups: [(String, [TargetResult])] = []
        for t in targets {
            let g = t.group ?? "issue 4"
            if let i = groups.firstIndex(where: { $0.0 == g }) { groups[i].1.append(t) } else { groups.append((g, [t])) }
        }
        return groups
    }

    /// A target's limit with its unit: `1.3 ×`, `30 ms`, `85 %`.
    static func limit(_ t: TargetResult) -> String { t.figure == true ? "—" : String(format: "%g ", t.limit) + t.unit }

    /// Issue 9's sized and hybrid scenarios as whole migrations: time, against the idle guest of the same size.
    static func underLoad(_ r: BenchReport) -> [String] {
        let sized = r.scenarios.filter { $0.scenario.arenaBytes != nil || $0.scenario.pages == .hybrid }
        guard !sized.isEmpty else { return [] }
        var out = ["", "Whole migrations under load (issue 9): destination's connect-to-complete time, median of runs, against "
            + "the idle guest of the same size; downtime for hybrid runs; destination PSS beyond the arena (largest run)"]
        for s in sized {
            out.append("  " + pad(s.name, 34) + underLoadCells(s, r).joined(separator: "  "))
        }
        return out
    }

    static func underLoadCells(_ s: ScenarioResult, _ r: BenchReport) -> [String] {
        let idle = r.migrations.first { $0.arenaBytes == s.arenaBytes }
        let seconds = s.migrationSeconds ?? 0
        let demand = s.runs.map(\.demandPages).sorted()[s.runs.count / 2]
        var cells = [String(format: "%.3f s", seconds) + " (runs \(s.runs.map { String(format: "%.3f", $0.elapsedSeconds) }.joined(separator: ", ")))",
                     idle.map { String(format: "%.2f× idle %.3f s", seconds / $0.seconds, $0.seconds) } ?? "no idle run of this size",
                     "\(demand) of \(s.arenaBytes / Arena.systemPageSize) pages on demand"]
        let downtimes = s.runs.compactMap(\.downtimeMillis)
        if !downtimes.isEmpty { cells.append("downtime " + downtimes.map { String(format: "%.1f", $0) }.joined(separator: ", ") + " ms") }
        if let pss = overhead(s.runs.compactMap(\.destinationMemory), arena: s.arenaBytes) { cells.append(pss) }
        return cells
    }

    /// "PSS +12.3 MiB (2.4 %)": the largest destination PSS beyond the arena.
    static func overhead(_ memory: [ProcessMemory], arena: Int) -> String? {
        guard let worst = memory.max(by: { $0.pssBytes < $1.pssBytes }), arena > 0 else { return nil }
        let own = worst.pssBytes - arena
        return String(format: "PSS +%.1f MiB (%.1f%%)", Double(own) / 1_048_576, Double(own) / Double(arena) * 100)
    }

    /// Handler mode: one line per scenario, then one per run.
    static func handlerModeLines(_ r: BenchReport) -> [String] {
        guard let h = r.handlerMode else { return [] }
        var out = ["", "Handler mode (a VMM's memory): \(ByteSize(bytes: h.imageBytes)) image, the destination as the stand-in VMM's "
            + "page-fault handler (--uffd-socket); loop-side latency (fault read until resolved), median of the runs' p50 and p99"]
        if let skipped = h.skipped { out.append("  skipped: \(skipped)") }
        for s in h.scenarios {
            out.append("  " + pad((s.busy ? "!" : "") + s.name, 18)
                + (s.loopSideP50.map { "loop-side p50 \(n($0)) µs, p99 \(s.loopSideP99.map(n) ?? "—") µs" } ?? "no demand faults")
                + String(format: "; migrated in %.3f s (%.0f MB/s), %d pages on demand, VMM %.3f s (medians)", s.migrationSeconds,
                         s.megabytesPerSecond, s.demandPages, s.vmmSeconds))
            for run in s.runs { out.append("    run \(run.repetition): " + BenchRunner.describe(run)) }
        }
        return out
    }

    /// Issue 10's working set: one line per run.
    static func workingSetLines(_ r: BenchReport) -> [String] {
        guard let ws = r.workingSet else { return [] }
        var out = ["", "Working set (issue 10): \(ByteSize(bytes: ws.arenaBytes)) hot-set guest, \(ws.sourceGuestThreads) source "
            + "threads at \(ws.guestAccessRate) accesses/s (unthrottled in the cost runs), "
            + String(format: "%.1f s", ws.warmUpSeconds) + " warm-up scanned every \(ws.intervalMillis) ms with "
            + "\(ws.method ?? "no tracker") (asked: \(ws.requestedTracking)); destination \(ws.backend.rawValue), "
            + "\(ws.destinationGuestThreads) hot-set threads (none in the cost runs)"]
        if let skipped = ws.skipped { out.append("  skipped: \(skipped)") }
        for run in ws.runs {
            out.append("  " + pad("\(run.kind.rawValue) \(run.repetition)", 26) + BenchRunner.describe(run))
        }
        return out
    }

    /// How the source's stream shared the link with demand pages.
    static func pacing(_ l: LinkResult) -> String {
        guard let percent = l.pacingPercent else { return "the source's stream unpaced" }
        return "the source's stream paced to what demand pages leave of \(percent)% of the link's rate (source --max-bandwidth)"
    }

    /// Issue 9's real links: what was made, the floor on it, and what ran across it.
    static func linkLines(_ r: BenchReport) -> [String] {
        guard !r.links.isEmpty else { return [] }
        var out = ["", "Real links (issue 9): source and destination in network namespaces of their own, joined by a veth pair "
            + "shaped on both ends (created and removed by this run)"]
        for l in r.links {
            if let reason = l.skipped {
                out.append("  \(l.name): skipped: \(reason)")
                continue
            }
            out.append("  \(l.name): \(l.shaping)")
            out.append("    " + pacing(l))
            if let rtt = l.roundTrip, let floor = l.floor {
                out.append("    round trip across the idle link (\(rtt.placement.rawValue)): p50 \(n(rtt.latency.p50)) µs, "
                    + "p99 \(n(rtt.latency.p99)) µs; floor (+ raw uffd MISSING): p50 \(n(floor.p50)) µs, p99 \(n(floor.p99)) µs")
            }
            if let b = l.bandwidth {
                out.append(String(format: "    bulk transfer: %.0f MB/s best, %.0f MB/s median (the link's rate: %.0f MB/s)",
                                  b.best / 1e6, b.median / 1e6, l.rateBitsPerSecond / 8e6))
            }
            for s in l.scenarios {
                out.append("    " + s.name + ": " + String(format: "%llu faults, p50 %.1f µs, p90 %.1f µs, p99 %.1f µs", s.faultsMeasured,
                                                          s.latency.p50, s.latency.p90, s.latency.p99)
                    + (l.floor.map { String(format: ", p50 %.2f× the link's floor", s.latency.p50 / max($0.p50, 0.001)) } ?? "")
                    + "; p50 of each run " + runP50s(s))
            }
            if let m = l.migration {
                out.append("    idle guest, \(ByteSize(bytes: m.arenaBytes)): " + String(format: "%.3f s", m.seconds)
                           + " (runs \(m.runSeconds.map { String(format: "%.3f", $0) }.joined(separator: ", "))), "
                           + String(format: "%.0f MB/s, %.0f%% of the link's rate", m.megabytesPerSecond, (l.migrationFractionOfLink ?? 0) * 100)
                    + (overhead(m.destinationMemory ?? [], arena: m.arenaBytes).map { "; destination \($0)" } ?? ""))
            }
        }
        return out
    }

    static func load(_ values: [Double]) -> String {
        values.isEmpty ? "?" : values.map { String(format: "%.2f", $0) }.joined(separator: " ")
    }

    static func n(_ v: Double) -> String { v >= 1000 ? String(format: "%.0f", v) : String(format: "%.1f", v) }
    static func ratio(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "—" }
    /// Each run's p50, which shows when runs fell into different regimes.
    static func runP50s(_ s: ScenarioResult) -> String {
        s.runs.map { $0.latency.count > 0 ? n($0.latency.p50) : "—" }.joined(separator: ", ")
    }

    static func pair(_ s: LatencySummary) -> String { "\(n(s.p50)) (\(n(s.p99)))" }

    private static func row(_ name: String, _ placement: String, _ count: String, _ a: String, _ b: String, _ c: String,
                            _ d: String, _ e: String, extra: String = "") -> String {
        pad(name, 30) + pad(placement, 10) + lpad(count, 7) + [a, b, c, d, e].map { lpad($0, 9) }.joined() + "  " + extra
    }

    private static func scenarioRow(_ cells: String...) -> String {
        pad(cells[0], 28) + lpad(cells[1], 8) + cells[2...].map { lpad($0, 9) }.joined()
    }

    private static func phaseRow(_ cells: String...) -> String {
        pad(cells[0], 28) + cells[1...].map { lpad($0, 16) }.joined()
    }

    static func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }
    static func lpad(_ s: String, _ width: Int) -> String { s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s }
}
