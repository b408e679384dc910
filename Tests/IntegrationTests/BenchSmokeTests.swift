import Foundation
import MigrateAgent
import MigrateBench
import Testing

/// Runs the real `migrate-agent bench` in a tiny configuration and checks that
/// its output is complete and sane: every requested scenario present, every
/// distribution's percentiles ordered, counts that add up, integrity flags
/// true. Benchmarks measure; this test never judges a figure's size.
@Suite("bench smoke test")
struct BenchSmokeTests {
    /// The scenarios asked for: two without the background stream (every page is a
    /// measured demand fault), one with it (some pages arrive in the background),
    /// one with stale pages (hybrid pre-copy), and a busy guest of its own size
    /// (issue 9: its whole migration against the idle guest's of that size).
    static let scenarioNames = ["random-1t-nobg", "sequential-4t-nobg", "random-1t-bg", "random-1t-nobg-stale", "random-4t-bg@8MiB"]
    static let arenaBytes = 4 << 20
    static let deadlineSeconds = 60.0

    @Test("a tiny benchmark run writes complete, sane JSON, CSV and a table")
    func tinyRun() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-bench-smoke-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("bench.json").path
        let csv = directory.appendingPathComponent("csv").path
        let run = try Self.runBench(in: directory, arguments: [
            "bench", "--arena", "\(Self.arenaBytes)", "--scenarios", Self.scenarioNames.joined(separator: ","),
            "--repetitions", "1", "--migration-sizes", "8MiB", "--baseline-samples", "300", "--bandwidth", "8MiB",
            "--no-pinned-baselines", "--run-timeout", "30", "--links", "none", "--working-set", "none", "--json", json, "--csv", csv,
        ])
        guard let status = run.status else {
            Issue.record("migrate-agent bench did not finish within \(Self.deadlineSeconds) s (killed); stderr:\n\(run.stderr)")
            return
        }
        try #require(status == 0, "migrate-agent bench exited with \(status); stderr:\n\(run.stderr)")

        let data = try #require(FileManager.default.contents(atPath: json), "no JSON report at \(json)")
        let report = try JSONDecoder().decode(BenchReport.self, from: data)
        try #require(report.succeeded && report.error == nil, "the run failed: \(report.error ?? "no error given"); stderr:\n\(run.stderr)")
        checkMachine(report.machine)
        try checkBaselines(report)
        try checkScenarios(report, csv: csv)
        checkMigration(report)
        try checkHandlerMode(report)
        #expect(Set(report.targets.filter { $0.group == "issue 4" }.map(\.id))
            == ["p50-vs-floor", "p99-vs-floor", "background-vs-idle", "idle-migration"])
        #expect(Set(report.targets.filter { $0.group == UnderLoadTargets.group }.map(\.id)) == [
            "background-p50-1t", "background-p99-1t", "background-p50-4t", "background-p99-4t", "busy-random-migration",
            "busy-sequential-migration", "idle-vs-local-install-8MiB", "hybrid-downtime", "hybrid-stale-vs-absent",
            "link-1gbit-p50-vs-floor", "link-10gbit-p50-vs-floor", "destination-pss", "handler-mode-background-p50",
        ])
        let workingSet = report.targets.filter { $0.group == WorkingSetTargets.group }
        #expect(workingSet.count == 6 && workingSet.allSatisfy { $0.value == nil && $0.basis.contains("--working-set none") })
        #expect(report.workingSet == nil)
        // Judged from this run's figures: the busy guest against the idle one of its size, the idle one against
        // the local install, and the destination's memory.
        for id in ["busy-random-migration", "idle-vs-local-install-8MiB", "destination-pss"] {
            #expect(report.targets.first { $0.id == id }?.value != nil, "\(id) not judged")
        }
        for name in report.scenarios.map(\.name) + ["Baselines", "Targets", "local install", "under load", "Handler mode"] {
            #expect(run.stdout.contains(name), "the table on stdout lacks \(name)")
        }
    }

    @Test("the working set alone: no baselines, every issue 10 figure present")
    func workingSetAlone() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-bench-ws-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("bench.json").path
        let run = try Self.runBench(in: directory, arguments: [
            "bench", "--scenarios", "none", "--migration-sizes", "none", "--links", "none", "--working-set", "8MiB",
            "--working-set-seconds", "0.3", "--repetitions", "1", "--run-timeout", "30", "--handler-mode", "none", "--json", json,
        ])
        try #require(run.status == 0, "migrate-agent bench exited with \(String(describing: run.status)); stderr:\n\(run.stderr)")
        let report = try JSONDecoder().decode(BenchReport.self, from: try #require(FileManager.default.contents(atPath: json)))
        #expect(report.succeeded && report.baselines == nil && report.scenarios.isEmpty && report.migrations.isEmpty)
        let ws = try #require(report.workingSet, "no working set in the report")
        #expect(ws.skipped == nil && ws.arenaBytes == 8 << 20 && ws.method != nil)
        #expect(ws.runs.map(\.kind) == [.hotFirst, .addressOrder, .trackedUnthrottled, .untrackedUnthrottled])
        for r in ws.runs {
            #expect(r.integrity.digestMatch && r.integrity.arenaVerified && r.integrity.guestMismatches == 0, "\(r.kind): \(r.integrity)")
            let w = try #require(r.workingSet, "\(r.kind): no warm-up report")
            #expect(w.method == (r.kind.tracked ? ws.method : "off") && (w.guestAccessesPerSecond ?? 0) > 0, "\(r.kind): \(w)")
            if r.kind.tracked {
                #expect(w.recall.map { (0...1).contains($0) } == true && w.precision.map { (0...1).contains($0) } == true)
                #expect(w.costs != nil && !w.pagesAccessedPerInterval.isEmpty)
            }
        }
        // Both orders announce the hot set, so both count its demand faults; only hot-first streams it first.
        for r in ws.runs where r.kind == .hotFirst || r.kind == .addressOrder {
            #expect(r.hotSetPages > 0 && r.hotSetResidentMillis != nil, "\(r.kind): hot set \(r.hotSetPages)")
        }
        #expect(ws.runs(.hotFirst).allSatisfy { $0.streamHeadPages > 0 } && ws.runs(.addressOrder).allSatisfy { $0.streamHeadPages == 0 })
        #expect(Set(report.targets.compactMap(\.group)) == [WorkingSetTargets.group], "groups: \(report.targets.compactMap(\.group))")
        for id in ["hot-first-demand-faults", "hot-set-demand-faults", "hot-set-resident", "tracker-cost", "working-set-recall",
                   "working-set-precision"] {
            // A ratio needs a non-zero address-order count; its counts are there in any case.
            #expect(report.targets.first { $0.id == id }?.context != nil, "\(id) not judged")
        }
        for text in ["Working set (issue 10)", "Targets (issue 10: working set)", "untracked-unthrottled 1", "baselines not measured"] {
            #expect(run.stdout.contains(text), "the table on stdout lacks \(text)")
        }
    }

    // MARK: Checks

    func checkMachine(_ m: MachineInfo) {
        #expect(!m.kernel.isEmpty && !m.cpuModel.isEmpty && !m.date.isEmpty)
        #expect(m.cores >= 1 && m.memoryBytes > 0)
        #expect(m.loadBefore.count == 3 && m.loadAfter.count == 3)
    }

    func checkBaselines(_ report: BenchReport) throws {
        let b = try #require(report.baselines, "no baselines")
        checkOrdered(b.firstTouch.latency, "first-touch", nonEmpty: true)
        for id in ["uffd-missing", "uffd-minor"] {
            let x = try #require(b.userfaultfd(id, .unpinned), "no unpinned \(id) baseline")
            checkOrdered(x.latency, id, nonEmpty: true)
            #expect(x.sameCPUFraction.map { (0...1).contains($0) } ?? false, "\(id): same-CPU fraction missing or out of range")
        }
        let rtt = try #require(b.roundTrip(.unpinned), "no unpinned round-trip baseline")
        checkOrdered(rtt.latency, "loopback-rtt", nonEmpty: true)
        #expect(b.bandwidth.transfers.count == 3 && b.bandwidth.best > 0 && b.bandwidth.median <= b.bandwidth.best)
        let floor = try #require(b.floor, "no floor")
        #expect(floor.p50 > 0 && floor.p50 <= floor.p99)
        #expect(report.floorAtEnd != nil)
    }

    func checkScenarios(_ report: BenchReport, csv: String) throws {
        let expected = try Self.scenarioNames.map { try BenchScenario(parsing: $0, defaultBackend: report.backend).name }
        #expect(report.scenarios.map(\.name) == expected, "scenarios in the report: \(report.scenarios.map(\.name))")
        for s in report.scenarios {
            let pages = s.arenaBytes / 4096
            #expect(s.runs.count == 1, "\(s.name): \(s.runs.count) runs")
            #expect(s.arenaBytes == (s.scenario.arenaBytes ?? Self.arenaBytes) && (s.migrationSeconds ?? 0) > 0)
            checkOrdered(s.latency, s.name, nonEmpty: isAbsentOnDemand(s))
            for run in s.runs {
                #expect(run.integrity.digestMatch && run.integrity.arenaVerified && run.integrity.sourceSawDigestMatch,
                        "\(s.name): integrity \(run.integrity)")
                #expect(run.integrity.guestMismatches == 0)
                checkMemory(run.destinationMemory, arena: s.arenaBytes, s.name)
                if s.scenario.pages == .stale {
                    #expect(run.precopyPages == pages, "\(s.name): \(run.precopyPages) pages pre-copied of \(pages)")
                    #expect(run.staleFaults <= run.staleAtSwitchover)
                } else {
                    #expect(run.demandPages + run.backgroundPages == pages, "\(s.name): \(run.demandPages) + \(run.backgroundPages) pages")
                }
                checkOrdered(run.latency, "\(s.name) run", nonEmpty: isAbsentOnDemand(s))
                if let phases = run.phases {
                    for (phase, summary) in [("delivered", phases.delivered), ("written", phases.requestWritten),
                                             ("received", phases.pageReceived), ("resolved", phases.resolved),
                                             ("woken", phases.woken), ("total", phases.total)] {
                        checkOrdered(summary, "\(s.name) phase \(phase)", nonEmpty: false)
                    }
                }
            }
            if isAbsentOnDemand(s) {
                // Without the background stream every page is fetched on demand and timed once.
                #expect(s.faultsMeasured == UInt64(pages), "\(s.name): \(s.faultsMeasured) faults measured of \(pages) pages")
                #expect(s.faultsPerSecond > 0 && s.touchSeconds > 0)
                #expect((s.p50OverFloor ?? 0) > 0 && (s.p99OverFloor ?? 0) > 0, "\(s.name): ratios to the floor missing")
                #expect(s.phases.map { $0.total.count > 0 } ?? false, "\(s.name): no phase breakdown")
            }
            let rows = (try? String(contentsOfFile: "\(csv)/\(s.name).csv", encoding: .utf8))?.split(separator: "\n") ?? []
            #expect(rows.first == "percentile,latency_us", "\(s.name).csv: missing or without its header")
            if isAbsentOnDemand(s) { #expect(rows.count > 100, "\(s.name).csv: \(rows.count) rows") }
        }
        for baseline in ["baseline-uffd-missing", "baseline-loopback-rtt", "floor"] {
            #expect(FileManager.default.fileExists(atPath: "\(csv)/\(baseline).csv"), "\(baseline).csv missing")
        }
    }

    /// Absent pages and no background stream: every page is a timed demand fault.
    func isAbsentOnDemand(_ s: ScenarioResult) -> Bool { !s.scenario.background && s.scenario.pages == .absent }

    func checkMigration(_ report: BenchReport) {
        #expect(report.migrations.map(\.arenaBytes) == [8 << 20])
        for m in report.migrations {
            #expect(m.seconds > 0 && m.megabytesPerSecond > 0 && (m.fractionOfLoopback ?? 0) > 0)
            #expect(m.integrity.allSatisfy { $0.digestMatch && $0.arenaVerified && $0.guestMismatches == 0 })
            // The local install rate of the same bytes, measured just before: three passes, each complete,
            // the third with a filled memfd of the same size held.
            guard let install = m.localInstall else {
                Issue.record("idle migration of \(m.arenaBytes) bytes: no local install baseline")
                continue
            }
            #expect(install.bytes == m.arenaBytes && install.bytesPerCopy == 256 << 10 && install.backend == report.backend)
            #expect(install.passes.map(\.heldBytes) == [0, 0, m.arenaBytes], "local install passes: \(install.passes)")
            for p in install.passes {
                #expect(p.seconds > 0 && p.megabytesPerSecond > 0 && p.microsPerPage > 0, "local install pass \(p)")
                #expect(p.segmentMicrosPerPage.count == 4 && p.segmentMicrosPerPage.allSatisfy { $0 > 0 }, "local install pass \(p)")
            }
            #expect(install.bestMegabytesPerSecond == install.passes.map(\.megabytesPerSecond).max())
            #expect(install.hashMicrosPerPage > 0)
            #expect((m.fractionOfLocalInstall ?? 0) > 0, "no fraction of the local install rate")
            #expect(m.destinationMemory?.count == m.runSeconds.count, "idle migration: no destination memory per run")
            for memory in m.destinationMemory ?? [] { checkMemory(memory, arena: m.arenaBytes, "idle migration") }
        }
    }

    /// Handler mode (by default on an image of the arena's size): every scenario ran, every page arrived and
    /// matched, the counts add up, and only the runs with a VMM guest thread faulted.
    func checkHandlerMode(_ report: BenchReport) throws {
        let h = try #require(report.handlerMode, "no handler mode in the report")
        #expect(h.skipped == nil && h.imageBytes == Self.arenaBytes, "handler mode: \(h.skipped ?? "") \(h.imageBytes)")
        #expect(h.scenarios.map(\.scenario) == HandlerModeScenario.allCases)
        let pages = h.imageBytes / 4096
        for s in h.scenarios {
            #expect(s.runs.count == 1 && s.migrationSeconds > 0 && s.megabytesPerSecond > 0 && s.vmmSeconds > 0, "\(s.name): \(s)")
            for run in s.runs {
                #expect(run.digestMatch, "\(s.name): digest mismatch")
                #expect(run.demandPages + run.backgroundPages == pages, "\(s.name): \(run.demandPages) + \(run.backgroundPages) pages")
                if let loopSide = run.loopSide { checkOrdered(loopSide, "\(s.name) loop side", nonEmpty: true) }
            }
        }
        // Without the stream every page the VMM's guest reads is a demand fault, timed on the loop.
        let onDemand = try #require(h.scenario(.oneThreadNoBackground))
        #expect(onDemand.demandPages == pages && onDemand.runs.allSatisfy { $0.loopSide?.count ?? 0 >= UInt64(pages) })
        #expect((onDemand.loopSideP50 ?? 0) > 0 && onDemand.loopSideP50! <= onDemand.loopSideP99!)
        // No guest: the stream moves every page, every eighth (all zero) as a zero-page frame.
        let idle = try #require(h.scenario(.idle))
        #expect(idle.demandPages == 0 && idle.loopSideP50 == nil)
        #expect(idle.runs.allSatisfy { $0.zeroPagesReceived == pages / 8 }, "\(idle.runs.map(\.zeroPagesReceived))")
        #expect(report.targets.first { $0.id == "handler-mode-background-p50" }?.figure == true)
    }

    /// The destination's PSS counts the arena once (it is all present at the end), its RSS up to twice.
    func checkMemory(_ m: ProcessMemory?, arena: Int, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let m else {
            Issue.record("\(what): the destination reported no memory", sourceLocation: sourceLocation)
            return
        }
        #expect(m.pssBytes > arena && m.pssShmemBytes >= arena / 100 * 99 && m.rssBytes >= m.pssBytes, "\(what): \(m)",
                sourceLocation: sourceLocation)
    }

    @Test("a real link: namespaces made, measured across and removed",
          .enabled(if: BenchRunner.linkUnavailableReason() == nil, "needs root, ip and tc"))
    func link() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-bench-link-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("bench.json").path
        let run = try Self.runBench(in: directory, arguments: [
            "bench", "--arena", "\(Self.arenaBytes)", "--scenarios", "none", "--migration-sizes", "none", "--links", "1gbit",
            "--repetitions", "1", "--baseline-samples", "300", "--bandwidth", "16MiB", "--no-pinned-baselines",
            "--run-timeout", "30", "--handler-mode", "none", "--json", json,
        ])
        try #require(run.status == 0, "migrate-agent bench exited with \(String(describing: run.status)); stderr:\n\(run.stderr)")
        let report = try JSONDecoder().decode(BenchReport.self, from: try #require(FileManager.default.contents(atPath: json)))
        let link = try #require(report.links.first, "no link in the report")
        #expect(report.links.count == 1 && link.name == "1gbit" && link.skipped == nil && link.rateBitsPerSecond == 1e9)
        checkOrdered(try #require(link.roundTrip).latency, "link round trip", nonEmpty: true)
        #expect((link.floor?.p50 ?? 0) > 0 && (link.bandwidth?.best ?? 0) > 0)
        // A 1 Gbit/s link carries at most 125 MB/s: the shaping took effect.
        #expect((link.bandwidth?.best ?? .infinity) < 130e6, "bulk \(link.bandwidth?.best ?? 0) B/s over a 1gbit link")
        #expect(link.scenarios.map(\.name) == ["random-1t-bg-\(report.backend.rawValue)"])
        #expect(link.migration.map { $0.integrity.allSatisfy { $0.digestMatch && $0.arenaVerified } } == true)
        #expect(report.targets.first { $0.id == "link-1gbit-p50-vs-floor" }?.value != nil)
        #expect(run.stderr.contains("creating network namespaces") && run.stderr.contains("removed the network namespaces"))
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).filter { $0.hasPrefix("mabench-") }
        #expect(left.isEmpty, "network namespaces left behind: \(left)")
    }

    func checkOrdered(_ s: LatencySummary, _ what: String, nonEmpty: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        if nonEmpty { #expect(s.count > 0, "\(what): no samples", sourceLocation: sourceLocation) }
        guard s.count > 0 else { return }
        #expect(s.p50 > 0 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max,
                "\(what): percentiles out of order: \(s)", sourceLocation: sourceLocation)
    }

    // MARK: Running the binary

    /// The `migrate-agent` executable built beside this test bundle (the
    /// IntegrationTests target depends on it).
    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("migrate-agent").path
    }

    /// Runs the binary with output to files; status nil when it overran the deadline and was killed.
    static func runBench(in directory: URL, arguments: [String]) throws -> (status: Int32?, stdout: String, stderr: String) {
        let outPath = directory.appendingPathComponent("stdout.txt")
        let errPath = directory.appendingPathComponent("stderr.txt")
        _ = FileManager.default.createFile(atPath: outPath.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath.path, contents: nil)
        let out = try FileHandle(forWritingTo: outPath)
        let err = try FileHandle(forWritingTo: errPath)
        let process = Process()
        // In a session of its own (setsid execs without forking here), so that on the
        // deadline the benchmark and the agents it started are killed as one group.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        process.arguments = [binary] + arguments
        process.currentDirectoryURL = directory
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        var status: Int32?
        if exited.wait(timeout: .now() + deadlineSeconds) == .success {
            process.waitUntilExit()
            status = process.terminationStatus
        } else {
            kill(-process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? out.close()
        try? err.close()
        let read = { (url: URL) in (try? String(contentsOf: url, encoding: .utf8)) ?? "" }
        return (status, read(outPath), read(errPath))
    }
}
