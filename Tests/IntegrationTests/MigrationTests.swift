import Foundation
import MigrateAgent
import MigrateDemo
import Testing

/// Whole migrations between two real processes on 127.0.0.1.
@Suite("migration between two processes", .serialized)
struct MigrationTests {
    @Test("a 128 MiB guest with 4 threads migrates and every byte matches", arguments: ["minor", "missing"])
    func migrationMatches(protection: String) throws {
        let scratch = AgentHarness.scratchDirectory()
        let (source, address) = try AgentHarness.startSource(arena: "128MiB", extra: ["--report-json", scratch.appendingPathComponent("s.json").path])
        defer { source.terminate() }
        let reportPath = scratch.appendingPathComponent("d.json").path
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "128MiB", "--guest-threads", "4",
            "--pattern", "random", "--protection", protection, "--report-json", reportPath,
        ])
        let destinationExit = destination.wait(seconds: 120)
        let sourceExit = source.wait(seconds: 30)
        #expect(destinationExit == 0, "destination: \(destination.capturedOutput)")
        #expect(sourceExit == 0, "source: \(source.capturedOutput)")
        let report = try #require(ReportFormatting.read(DestinationReport.self, fromFile: reportPath))
        #expect(report.backend.rawValue == protection)
        // Preallocated by default where the backend can use it (minor), never on missing.
        #expect((report.preallocateMillis != nil) == (protection == "minor"))
        #expect(report.digestMatch)
        #expect(report.arenaVerified)
        #expect(report.demandPages + report.backgroundPages == report.pageCount)
        #expect(report.demandPages > 0, "the guest should have faulted on some absent page")
        // The guest faults from the start: the stream's runs go to the installer thread.
        #expect(report.backgroundPagesOnInstallerThread > 0, "installed off the loop while the guest faulted")
        #expect(report.guest?.mismatches == 0)
        #expect(report.guest?.pagesTouched == report.pageCount)
        let sourceReport = try #require(ReportFormatting.read(SourceReport.self, fromFile: scratch.appendingPathComponent("s.json").path))
        #expect(sourceReport.destinationDigestMatch)
        // Both agents say how much CPU the migration took; 4 faulting guest threads and the
        // loop kept this process busy, so it used CPU, and no more than every core all along.
        let cpu = try #require(report.cpuDuringMigration)
        #expect(cpu.totalSeconds > 0 && cpu.totalSeconds <= Double(ProcessInfo.processInfo.activeProcessorCount) * report.elapsedSeconds + 0.05,
                "\(cpu) over \(report.elapsedSeconds) s")
        #expect((sourceReport.cpuDuringMigration?.totalSeconds ?? 0) > 0)
        // The guest's threads are part of this process: some of its CPU, not more. Two clocks: getrusage
        // counts other running threads only up to their last tick (up to 40 ms each at HZ=100).
        let guestCPU = try #require(report.guestCPUSecondsDuringMigration)
        #expect(guestCPU > 0 && guestCPU <= cpu.totalSeconds + 0.04 * 4, "guest \(guestCPU) s of \(cpu)")
    }

    @Test("the agents' scheduling and memory options still migrate every byte", arguments: [
        ([], ["--install-thread", "never"]), ([], ["--install-thread", "always"]), ([], ["--no-yield-to-demand"]),
        (["--loop-slice", "100"], ["--loop-slice", "100"]), (["--busy-poll-during-stream"], []), ([], ["--no-preallocate"]),
        ([], ["--no-preallocate", "--no-install-thread"]),
    ])
    func schedulingOptions(sourceOptions: [String], options: [String]) throws {
        let scratch = AgentHarness.scratchDirectory()
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: sourceOptions)
        defer { source.terminate() }
        let reportPath = scratch.appendingPathComponent("d.json").path
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "64MiB", "--guest-threads", "2",
            "--pattern", "random", "--report-json", reportPath,
        ] + options)
        #expect(destination.wait(seconds: 120) == 0, "destination: \(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "source: \(source.capturedOutput)")
        let report = try #require(ReportFormatting.read(DestinationReport.self, fromFile: reportPath))
        #expect(report.digestMatch && report.arenaVerified && report.guest?.mismatches == 0)
        #expect(report.demandPages + report.backgroundPages == report.pageCount)
        #expect((report.preallocateMillis == nil) == options.contains("--no-preallocate"))
        if options.contains("--no-install-thread") || options.contains("never") { #expect(report.backgroundPagesOnInstallerThread == 0) }
        if options.contains("always") { #expect(report.backgroundPagesOnInstallerThread > 0) }
        // A kernel without custom slices (before 6.12) refuses it: a warning that says so, and the migration goes on.
        if destination.capturedOutput.contains("cannot set the loop's scheduler slice") {
            #expect(destination.capturedOutput.contains("Linux 6.12"), "\(destination.capturedOutput)")
        }
    }

    @Test("--max-bandwidth paces the background stream: 32 MiB at 16 MiB/s takes over 1.5 s, and every byte matches")
    func maxBandwidth() throws {
        let scratch = AgentHarness.scratchDirectory()
        let (source, address) = try AgentHarness.startSource(arena: "32MiB", extra: ["--max-bandwidth", "16MiB"])
        defer { source.terminate() }
        let reportPath = scratch.appendingPathComponent("d.json").path
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "32MiB", "--guest-threads", "0", "--report-json", reportPath,
        ])
        #expect(destination.wait(seconds: 120) == 0, "destination: \(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "source: \(source.capturedOutput)")
        let report = try #require(ReportFormatting.read(DestinationReport.self, fromFile: reportPath))
        #expect(report.digestMatch && report.backgroundPages == report.pageCount)
        // No guest faults here: the loop installs the stream itself, the installer thread gets nothing.
        #expect(report.backgroundPagesOnInstallerThread == 0)
        #expect(report.elapsedSeconds > 1.5, "unpaced, 32 MiB moves in about 0.05 s here: \(report.elapsedSeconds) s")
        #expect(!source.capturedOutput.contains("not paced"), "\(source.capturedOutput)")
    }

    @Test("demo --json reports the required fields")
    func demoJSON() throws {
        let demo = try AgentHarness.start(["demo", "--arena", "64MiB", "--json"])
        let exit = demo.wait(seconds: 120)
        #expect(exit == 0, "\(demo.capturedOutput)")
        let output = demo.capturedOutput
        let json = try #require(output.range(of: "{").map { String(output[$0.lowerBound...]) })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["backend"] as? String != nil)
        #expect(object["digestMatch"] as? Bool == true)
        #expect(object["demandPages"] as? Int != nil)
        #expect(object["backgroundPages"] as? Int != nil)
        let latency = try #require(object["faultLatencyMicros"] as? [String: Any])
        for key in ["p50", "p99", "max"] { #expect(latency[key] as? Double != nil, "faultLatencyMicros.\(key)") }
    }
}

/// Hybrid migration: pre-copy while the source's guest writes, then post-copy with stale pages protected.
@Suite("hybrid pre-copy then post-copy", .serialized)
struct HybridMigrationTests {
    @Test("guest writes during pre-copy; stale pages are protected and refreshed; every byte matches",
          arguments: [("minor", "pagemap-scan"), ("missing", "pagemap-scan"), ("minor", "sync-wp")])
    func hybrid(protection: String, tracking: String) throws {
        let scratch = AgentHarness.scratchDirectory()
        let sourcePath = scratch.appendingPathComponent("s.json").path
        let (source, address) = try AgentHarness.startSource(arena: "128MiB", extra: [
            "--precopy-rounds", "2", "--dirty-rate", "40000", "--dirty-tracking", tracking, "--report-json", sourcePath,
        ])
        defer { source.terminate() }
        let reportPath = scratch.appendingPathComponent("d.json").path
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "128MiB", "--guest-threads", "4",
            "--pattern", "random", "--protection", protection, "--report-json", reportPath,
        ])
        #expect(destination.wait(seconds: 120) == 0, "destination: \(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "source: \(source.capturedOutput)")
        let d = try #require(ReportFormatting.read(DestinationReport.self, fromFile: reportPath))
        let s = try #require(ReportFormatting.read(SourceReport.self, fromFile: sourcePath))
        #expect(d.digestMatch && d.arenaVerified && d.guest?.mismatches == 0)
        #expect(!s.precopyRounds.isEmpty && s.precopyRounds[0].pagesSent == d.pageCount)
        #expect(s.precopyRounds[0].pagesDirtied > 0, "the source's guest wrote during pre-copy")
        #expect(s.dirtyTracking == tracking)
        #expect(d.precopyPages >= d.pageCount)
        #expect(s.staleAtSwitchover > 0)
        #expect(d.pagesProtectedAtSwitchover == s.staleAtSwitchover)
        #expect(d.refreshedPages + d.unchangedPages >= d.pagesProtectedAtSwitchover)
        #expect(d.missingFaults == 0, "after a full pre-copy round nothing is absent")
        #expect(d.disagreements == 0)
    }
}
