import Foundation
import MigrateAgent
@testable import MigrateBench
import Testing

/// Issue 9's target judging and the scenario names it relies on, as pure
/// functions of a hand-made `BenchReport`: no agent runs here.
@Suite("bench targets of issue 9 and sized scenario names")
struct BenchTargetTests {
    // MARK: Scenario names

    @Test("a size suffix and the hybrid kind parse, and names round-trip")
    func names() throws {
        let busy = try BenchScenario(parsing: "random-4t-bg@512MiB", defaultBackend: .minor)
        #expect(busy.arenaBytes == 512 << 20 && busy.threads == 4 && busy.background && busy.pages == .absent)
        #expect(busy.name == "random-4t-bg-minor@512MiB")
        let hybrid = try BenchScenario(parsing: "random-4t-bg-rwp-hybrid@64MiB", defaultBackend: .minor)
        #expect(hybrid.pages == .hybrid && hybrid.backend == .rwp && hybrid.arenaBytes == 64 << 20)
        #expect(hybrid.withAbsentPages.name == "random-4t-bg-rwp@64MiB")
        let plain = try BenchScenario(parsing: "random-1t-nobg-stale", defaultBackend: .minor)
        #expect(plain.arenaBytes == nil && plain.pages == .stale && plain.name == "random-1t-nobg-minor-stale")
        for s in [busy, hybrid, plain] {
            #expect(try BenchScenario(parsing: s.name, defaultBackend: .missing) == s, "\(s.name) does not round-trip")
        }
        let defaults = BenchScenario.defaults(backend: .minor, staleAvailable: true).map(\.name)
        for name in ["random-4t-bg-minor@512MiB", "sequential-1t-bg-minor@512MiB", "random-4t-bg-minor-hybrid@512MiB"] {
            #expect(defaults.contains(name), "the default list lacks \(name)")
        }
    }

    @Test("bad sizes and impossible combinations are refused", arguments: [
        "random-4t-bg@", "random-4t-bg@12345", "random-4t-bg@0MiB", "random-4t-bg@1MiB@2MiB", "random-4t-bg@lots",
        "random-1t-nobg-missing-hybrid", "random-1t-nobg-minor-stale-hybrid",
    ])
    func refused(_ name: String) {
        #expect(throws: AgentError.self) { try BenchScenario(parsing: name, defaultBackend: .minor) }
    }

    @Test("link rates parse as tc writes them")
    func linkRates() throws {
        #expect(try LinkRate(parsing: "1gbit").bitsPerSecond == 1e9)
        #expect(try LinkRate(parsing: "10GBIT").name == "10gbit")
        #expect(try LinkRate(parsing: "500mbit").bytesPerSecond == 62.5e6)
        #expect(try LinkRate(parsing: "10gbit").tcArguments
            == ["root", "handle", "1:", "tbf", "rate", "10gbit", "burst", "1250000", "latency", "10ms"])
        // Expedited Forwarding (TOS 0xb8) first: the class the urgent connections' packets go to.
        let queue = try LinkRate(parsing: "1gbit").queueCommands
        #expect(queue.first == ["qdisc", "add", "dev", "DEV", "parent", "1:1", "handle", "10:", "htb", "default", "20"])
        #expect(queue.contains { $0.contains("0xb8") && $0.last == "10:10" })
        #expect(queue.contains { $0.contains("10:10") && $0.contains("prio") && $0.last == "0" })
        for bad in ["1gb", "fast", "0gbit", "-1gbit", "1kbit"] {
            #expect(throws: AgentError.self) { try LinkRate(parsing: bad) }
        }
    }

    @Test("smaps_rollup parses to bytes")
    func smapsRollup() throws {
        let m = try #require(ProcessMemory.parse(smapsRollup: """
            55c394d91000-7ffe27130000 ---p 00000000 00:00 0                          [rollup]
            Rss:              560000 kB
            Pss:              270000 kB
            Pss_Dirty:           112 kB
            Pss_Anon:           8000 kB
            Pss_File:           3000 kB
            Pss_Shmem:        262144 kB
            """))
        #expect(m == ProcessMemory(rssBytes: 560_000 << 10, pssBytes: 270_000 << 10, pssAnonBytes: 8000 << 10,
                                   pssShmemBytes: 262_144 << 10, pssFileBytes: 3000 << 10))
        #expect(ProcessMemory.parse(smapsRollup: "nothing here") == nil)
        #expect(ProcessMemory.current().map { $0.pssBytes > 0 && $0.rssBytes >= $0.pssBytes } ?? true)
    }

    // MARK: Judging

    @Test("every issue 9 target is judged from the same run's figures")
    func judged() throws {
        let mib = 1 << 20
        var r = try Self.report()
        r.scenarios = [
            try Self.scenario("random-1t-nobg", p50: 30, p99: 50),
            try Self.scenario("random-1t-bg", p50: 36, p99: 140),
            try Self.scenario("random-4t-nobg", p50: 50, p99: 100),
            try Self.scenario("random-4t-bg", p50: 70, p99: 400),
            try Self.scenario("random-4t-bg@512MiB", p50: 50, p99: 400, seconds: 0.6,
                              memory: Self.memory(pss: 512 * mib + 8 * mib), cpu: 1.08, guestCPU: 0.3),
            try Self.scenario("sequential-1t-bg@512MiB", p50: 40, p99: 400, seconds: 0.56),
            try Self.scenario("random-4t-bg-hybrid@512MiB", p50: 60, p99: 900, seconds: 0.9, downtime: [25, 40, 20]),
        ]
        r.machine.cores = 2
        r.migrations = [Self.migration(size: 512 * mib, seconds: 0.5, ofLocalInstall: 0.9, cpu: 0.95),
                        Self.migration(size: 1024 * mib, seconds: 1, ofLocalInstall: 0.5)]
        var link = LinkResult(name: "1gbit", rateBitsPerSecond: 1e9, shaping: "tc ...")
        link.floor = FaultFloor(placement: .sameCPU, uffd: Self.summary(10, 20), rtt: Self.summary(30, 40))
        link.scenarios = [try Self.scenario("random-1t-bg", p50: 90, p99: 2000)]
        link.migration = Self.migration(size: 512 * mib, seconds: 4.5, ofLocalInstall: 0.1, cpu: 3.6)
        link.migrationFractionOfLink = 0.95
        r.links = [link, LinkResult(name: "10gbit", rateBitsPerSecond: 1e10, shaping: "tc ...", skipped: "not root")]
        r.handlerMode = Self.handlerMode(p50s: [.oneThreadNoBackground: 60, .oneThreadBackground: 33])
        let targets = BenchTargets.judge(r)
        func target(_ id: String) throws -> TargetResult {
            try #require(targets.first { $0.id == id }, "no target \(id) in \(targets.map(\.id))")
        }
        for (id, value, met) in [
            ("background-p50-1t", 1.2, true), ("background-p99-1t", 2.8, true),
            ("background-p50-4t", 1.4, false), ("background-p99-4t", 4.0, false),
            ("busy-random-migration", 1.2, true), ("busy-sequential-migration", 1.12, false),
            ("idle-vs-local-install-512MiB", 90.0, true), ("idle-vs-local-install-1GiB", 50.0, false),
            ("hybrid-downtime", 25.0, true), ("hybrid-stale-vs-absent", 1.2, true),
            ("link-1gbit-p50-vs-floor", 2.25, false), ("destination-pss", 1.56, true),
        ] as [(String, Double, Bool)] {
            let t = try target(id)
            #expect(t.value == value && t.met == met, "\(id): \(t.value.map { "\($0)" } ?? "nil"), met \(String(describing: t.met))")
            #expect(t.group == UnderLoadTargets.group)
        }
        // How much of the machine both migrations took, from the agents' own CPU time.
        let busy = try target("busy-random-migration").context ?? ""
        #expect(busy.contains("used 1.08 CPU-s during the busy migration, 90% of the 2 cores over its time, against 0.95 CPU-s (95%) idle"),
                "\(busy)")
        // What the guest's own threads used, with the idle migration's CPU, bounds the busy one from below.
        #expect(busy.contains("used 0.30 CPU-s of it") && busy.contains("take 2 cores at least 0.625 s, 1.25× the idle migration"),
                "\(busy)")
        #expect(try target("busy-sequential-migration").context?.contains("CPU-s") == false, "a run without CPU figures names none")
        let handler = try target("handler-mode-background-p50")
        #expect(handler.value == 0.55 && handler.figure == true && handler.met == nil && handler.group == UnderLoadTargets.group)
        #expect(handler.context?.contains("33.0 µs with the stream") == true, "\(handler.context ?? "")")
        #expect(try target("link-1gbit-p50-vs-floor").context?.contains("with both agents using 40% of the 2 cores") == true)
        let skipped = try target("link-10gbit-p50-vs-floor")
        #expect(skipped.met == nil && skipped.basis.contains("not root"))
        #expect(try target("p50-vs-floor").group == "issue 4")
        // The Markdown shows every target, grouped.
        r.targets = targets
        let md = BenchMarkdown.results(r, image: "x.png")
        for heading in ["***issue 4***", "***issue 9: under load***", "### Whole migrations under load", "### Real links",
                        "### Handler mode (a VMM's memory)", "| `handler-idle` | no demand faults |"] {
            #expect(md.contains(heading), "the Markdown lacks \(heading)")
        }
    }

    @Test("a run without the figures leaves issue 9's targets unjudged, and says why")
    func notMeasured() throws {
        let targets = UnderLoadTargets.judge(try Self.report())
        #expect(targets.count == 13)
        for t in targets {
            #expect(t.met == nil && t.value == nil, "\(t.id) judged without figures")
            #expect(t.basis.contains("("), "\(t.id): the basis does not say what is missing: \(t.basis)")
        }
    }

    @Test("handler mode alone (no baselines) is judged as its figure only; skipped, the figure says why")
    func handlerModeAlone() throws {
        var r = try Self.report()
        r.handlerMode = Self.handlerMode(p50s: [.oneThreadNoBackground: 50, .oneThreadBackground: 40])
        let targets = BenchTargets.judge(r)
        #expect(targets.map(\.id) == ["handler-mode-background-p50"] && targets.first?.value == 0.8, "\(targets.map(\.id))")
        r.handlerMode = HandlerModeResult(imageBytes: 1 << 20, skipped: "no stand-in VMM at /x/stand-in-vmm")
        let skipped = try #require(BenchTargets.judge(r).first)
        #expect(skipped.value == nil && skipped.basis.contains("skipped: no stand-in VMM"), "\(skipped.basis)")
        r.targets = [skipped]
        #expect(BenchMarkdown.results(r, image: "x.png").contains("Skipped: no stand-in VMM"))
    }

    @Test("a hybrid run that timed no fault is judged on the stale and absent scenarios without the stream")
    func staleFallback() throws {
        var report = try Self.report()
        var hybrid = try Self.scenario("random-4t-bg-hybrid@512MiB", p50: 0, p99: 0, downtime: [2, 3])
        hybrid.latency = Self.summary(0, 0, count: 0)
        report.scenarios = [hybrid, try Self.scenario("random-4t-bg@512MiB", p50: 60, p99: 900),
                            try Self.scenario("random-4t-nobg-stale", p50: 70, p99: 200),
                            try Self.scenario("random-4t-nobg", p50: 50, p99: 150)]
        let stale = try #require(UnderLoadTargets.judge(report).first { $0.id == "hybrid-stale-vs-absent" })
        #expect(stale.value == 1.4 && stale.met == false)
        #expect(stale.basis.contains("random-4t-nobg-minor-stale") && stale.basis.contains("timed no fault"), "\(stale.basis)")
        // A handful of faults is no p50 either: the same fallback, and the few are shown.
        hybrid.latency = Self.summary(5000, 5000, count: 2)
        report.scenarios[0] = hybrid
        let few = try #require(UnderLoadTargets.judge(report).first { $0.id == "hybrid-stale-vs-absent" })
        #expect(few.value == 1.4 && few.basis.contains("timed 2 faults, under 100"), "\(few.basis)")
        #expect(few.context?.contains("p50 5000.0 µs") == true, "\(few.context ?? "")")
        // With enough faults the hybrid run itself is judged.
        hybrid.latency = Self.summary(66, 900, count: 100)
        report.scenarios[0] = hybrid
        let judged = try #require(UnderLoadTargets.judge(report).first { $0.id == "hybrid-stale-vs-absent" })
        #expect(judged.value == 1.1 && judged.met == true, "\(judged.basis)")
    }

    // MARK: Hand-made figures

    static func summary(_ p50: Double, _ p99: Double, count: UInt64 = 1000) -> LatencySummary {
        let json = #"{"count":\#(count),"p50":\#(p50),"p90":\#(p50),"p99":\#(p99),"p999":\#(p99),"max":\#(p99),"mean":\#(p50)}"#
        return try! JSONDecoder().decode(LatencySummary.self, from: Data(json.utf8))
    }

    static let load = OtherLoad(otherCores: 0, stealCores: 0, seconds: 1)
    static let intact = RunIntegrity(digestMatch: true, arenaVerified: true, guestMismatches: 0, sourceSawDigestMatch: true)

    static func memory(pss: Int) -> ProcessMemory {
        ProcessMemory(rssBytes: 2 * pss, pssBytes: pss, pssAnonBytes: 6 << 20, pssShmemBytes: pss - (8 << 20), pssFileBytes: 2 << 20)
    }

    static func scenario(_ name: String, p50: Double, p99: Double, seconds: Double = 1, downtime: [Double]? = nil,
                         memory: ProcessMemory? = nil, cpu: Double? = nil, guestCPU: Double? = nil) throws -> ScenarioResult {
        let s = try BenchScenario(parsing: name, defaultBackend: .minor)
        let runs = (downtime ?? [0]).map { d in
            ScenarioRun(latency: summary(p50, p99), touchSeconds: seconds, elapsedSeconds: seconds, demandPages: 10, backgroundPages: 0,
                        missingFaults: 0, staleFaults: 0, sharedFaults: 0, lateFaults: 0, duplicatePages: 0, eexistRaces: 0,
                        precopyPages: 0, staleAtSwitchover: 0, refreshedPages: 0, unchangedPages: 0, phases: nil, integrity: intact,
                        load: load, downtimeMillis: downtime == nil ? nil : d, destinationMemory: memory, agentCPUSeconds: cpu,
                        guestCPUSeconds: guestCPU)
        }
        return ScenarioResult(name: s.name, scenario: s, arenaBytes: s.arenaBytes ?? 256 << 20, runs: runs, latency: summary(p50, p99),
                              faultsMeasured: 1000, faultsPerSecond: 1000, touchSeconds: seconds, p50OverFloor: nil, p99OverFloor: nil,
                              phases: nil, busy: false, migrationSeconds: seconds)
    }

    static func migration(size: Int, seconds: Double, ofLocalInstall fraction: Double, cpu: Double? = nil) -> MigrationResult {
        let rate = Double(size) / seconds / 1e6
        let install = LocalInstallRate(bytes: size, bytesPerCopy: 256 << 10, backend: .minor, registration: "MISSING | MINOR",
                                       passes: [], bestMegabytesPerSecond: rate / fraction, bestMicrosPerPage: 1, hashMicrosPerPage: 0.4)
        return MigrationResult(arenaBytes: size, runSeconds: [seconds], seconds: seconds, megabytesPerSecond: rate, fractionOfLoopback: nil,
                               localInstall: install, fractionOfLocalInstall: fraction, reportedFreeKiB: nil, integrity: [intact],
                               load: [load], busy: false, destinationMemory: [memory(pss: size + (40 << 20))],
                               agentCPUSeconds: cpu.map { [$0] })
    }

    /// Handler-mode figures of a 256 MiB image, one run each, with these loop-side p50s (p99: 4×); the idle run faults never.
    static func handlerMode(p50s: [HandlerModeScenario: Double]) -> HandlerModeResult {
        var h = HandlerModeResult(imageBytes: 256 << 20)
        h.scenarios = HandlerModeScenario.allCases.map { scenario in
            let p50 = p50s[scenario]
            let run = HandlerModeRun(repetition: 1, loopSide: p50.map { summary($0, $0 * 4) }, elapsedSeconds: 0.25,
                                     demandPages: p50 == nil ? 0 : 2000, backgroundPages: p50 == nil ? 65536 : 63536,
                                     zeroPagesReceived: 8192, vmmSeconds: 0.3, digestMatch: true, load: load)
            return HandlerModeScenarioResult(scenario: scenario, imageBytes: 256 << 20, runs: [run])
        }
        return h
    }

    static func report() throws -> BenchReport {
        let settings = BenchSettings(arenaBytes: 256 << 20, repetitions: 1, writeRatio: 0.2, scenarios: [], migrationSizes: [],
                                     baselineSamples: 1, bandwidthBytes: 1, busyPollMicros: nil, commandLine: ["migrate-agent", "bench"])
        var r = BenchReport(machine: MachineInfo.current(), settings: settings, backend: .minor)
        r.succeeded = true
        return r
    }
}
