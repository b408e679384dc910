import Foundation
import Glibc
import MigrateAgent
import MigrateDemo
import Testing
import TestSupport

/// Handler mode end to end, with real processes: a source serving a memory
/// image, a destination waiting on a Unix socket, and the stand-in VMM that
/// does what Firecracker does at snapshot load (its own regions, its own
/// userfaultfd handed over with the region JSON) and checks every page it
/// reads against the image. Every wait has a deadline.
@Suite("a VMM's page-fault handler", .serialized)
struct VMMHandlerTests {
    static var standInVMM: String {
        URL(fileURLWithPath: AgentHarness.binary).deletingLastPathComponent().appendingPathComponent("stand-in-vmm").path
    }

    /// A 16 MiB image of pseudo-random pages (every eighth all zero), a source serving it,
    /// and the paths of a socket and a report for the destination.
    struct Setup {
        let scratch = AgentHarness.scratchDirectory()
        let image: String
        let socket: String
        let report: String
        let source: AgentProcess
        let address: String

        init(sourceExtra: [String] = [], imagePages: Int = 4096) throws {
            image = scratch.appendingPathComponent("memory.img").path
            socket = scratch.appendingPathComponent("uffd.sock").path
            report = scratch.appendingPathComponent("d.json").path
            _ = try MemoryFileTests.makeImage(pages: imagePages, at: image)
            (source, address) = try AgentHarness.startSource(arena: nil, extra: ["--memory-file", image] + sourceExtra)
        }

        func destination(_ extra: [String] = []) throws -> AgentProcess {
            try AgentHarness.start(["destination", "--connect", address, "--uffd-socket", socket,
                                    "--report-json", report, "--vmm-timeout", "30"] + extra)
        }

        func vmm(_ extra: [String]) throws -> AgentProcess {
            try AgentProcess(executable: VMMHandlerTests.standInVMM,
                             arguments: ["--socket", socket, "--image", image, "--deadline", "60"] + extra, captureStderr: true)
        }

        var destinationReport: DestinationReport? { ReportFormatting.read(DestinationReport.self, fromFile: report) }
    }

    @Test("the VMM's guest reads the image through the handler, for every generation of the region JSON and a gapped layout",
          arguments: [(["--json", "bytes"], "one"), (["--json", "kib"], "one"), (["--json", "none"], "gap"), (["--json", "bytes-only"], "gap")])
    func restore(json: [String], layout: String) throws {
        let setup = try Setup()
        defer { setup.source.terminate() }
        let destination = try setup.destination()
        defer { destination.terminate() }
        let vmm = try setup.vmm(json + ["--layout", layout, "--threads", "2", "--kernel-access"])
        defer { vmm.terminate() }
        #expect(vmm.wait(seconds: 90) == 0, "\(vmm.capturedOutput)")
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        #expect(setup.source.wait(seconds: 30) == 0, "\(setup.source.capturedOutput)")
        let r = try #require(setup.destinationReport)
        #expect(r.digestMatch, "the image arrived whole")
        #expect(r.vmmPID == vmm.pid && r.vmmRegions == (layout == "gap" ? 2 : 1))
        #expect(r.demandPages + r.backgroundPages == 4096)
    }

    @Test("2 MiB hugetlbfs regions are served a whole huge page at a time (nr_hugepages raised and restored)")
    func hugePages() throws {
        let reservation = try #require(HugePageReservation(pages: 8), "could not reserve 8 huge pages (/proc/sys/vm/nr_hugepages)")
        defer { reservation.restore() }
        let setup = try Setup(sourceExtra: ["--page-size", "2MiB"], imagePages: 2048)  // 8 MiB: four huge pages
        defer { setup.source.terminate() }
        let destination = try setup.destination()
        defer { destination.terminate() }
        let vmm = try setup.vmm(["--page-size", "2097152", "--layout", "gap", "--threads", "2", "--kernel-access"])
        defer { vmm.terminate() }
        #expect(vmm.wait(seconds: 90) == 0, "\(vmm.capturedOutput)")
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        let r = try #require(setup.destinationReport)
        #expect(r.digestMatch && r.pageSize == 2 << 20 && r.pageCount == 4, "\(r)")
    }

    @Test("the metrics file and the log2 latency buckets count the demand faults")
    func metrics() throws {
        let setup = try Setup(sourceExtra: ["--no-background"])
        defer { setup.source.terminate() }
        let metrics = setup.scratch.appendingPathComponent("metrics.prom").path
        let destination = try setup.destination(["--metrics-file", metrics])
        defer { destination.terminate() }
        let vmm = try setup.vmm(["--threads", "2"])
        defer { vmm.terminate() }
        #expect(vmm.wait(seconds: 90) == 0, "\(vmm.capturedOutput)")
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        let r = try #require(setup.destinationReport)
        let buckets = try #require(r.demandLatencyLog2Micros)
        #expect(buckets.count == 32)
        #expect(buckets.reduce(0, +) == UInt64(r.demandPages), "every demand fault is in one bucket")
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        #expect(text.contains("migrate_agent_pages_missing 0"), "\(text)")
        #expect(text.contains("migrate_agent_demand_pages_total \(r.demandPages)"), "\(text)")
        #expect(text.contains("migrate_agent_demand_fault_seconds_count \(r.demandPages)"), "\(text)")
        #expect(text.contains("migrate_agent_demand_fault_seconds_bucket{le=\"+Inf\"} \(r.demandPages)"), "\(text)")
    }

    @Test("pages the VMM's balloon gives back read zeros, never the image's bytes")
    func balloon() throws {
        // Demand only: the balloon's range is given back before any of it arrives.
        let setup = try Setup(sourceExtra: ["--no-background"])
        defer { setup.source.terminate() }
        let destination = try setup.destination()
        defer { destination.terminate() }
        let vmm = try setup.vmm(["--threads", "0", "--balloon", "64"])
        defer { vmm.terminate() }
        #expect(vmm.wait(seconds: 90) == 0, "\(vmm.capturedOutput)")
        // The VMM is done and gone; no live VM is owed the rest of the image.
        #expect(destination.wait(seconds: 30) == 0, "\(destination.capturedOutput)")
        let r = try #require(setup.destinationReport)
        #expect(r.removedRanges >= 1, "the REMOVE event must have been read")
        #expect(r.zeroPages >= 1, "faults on given-back pages are answered with zero pages")
        #expect(r.vmmExited && r.warning?.contains("never needed") == true, "\(String(describing: r.warning))")
        // Told why, the source ends at once (not after its 30 s reconnect timeout), and not as a success.
        #expect(setup.source.wait(seconds: 10) == 1, "\(setup.source.capturedOutput)")
        #expect(setup.source.capturedOutput.contains("exited before its memory was complete"), "\(setup.source.capturedOutput)")
    }

    @Test("pages the balloon gives back while the background stream installs them read zeros, on the installer thread or the loop",
          arguments: [true, false])
    func balloonMidStream(installThread: Bool) throws {
        // The balloon's 4096 pages are given back once half of them are resident: the
        // removal meets pages installed, pages on their way (in the installer's ring,
        // behind the gate) and pages not sent yet. Three rounds, each a new chance to race.
        let balloon = 4096
        for round in 1...3 {
            let setup = try Setup(imagePages: 8192)
            defer { setup.source.terminate() }
            // No VMM thread faults here: `auto` would keep every install on the loop.
            let destination = try setup.destination(["--install-thread", installThread ? "always" : "never"])
            defer { destination.terminate() }
            let vmm = try setup.vmm(["--threads", "0", "--balloon", "\(balloon)", "--balloon-at-resident", "50", "--linger", "60"])
            defer { vmm.terminate() }
            #expect(vmm.wait(seconds: 90) == 0, "round \(round): \(vmm.capturedOutput)")
            #expect(destination.wait(seconds: 60) == 0, "round \(round): \(destination.capturedOutput)")
            let r = try #require(setup.destinationReport)
            #expect(r.removedRanges == 1, "round \(round): the REMOVE event must have been read")
            #expect(r.removedPages > 0 && r.removedPages < balloon,
                    "round \(round): \(r.removedPages) of the \(balloon) pages given back were not here yet: the removal did not meet the stream")
            #expect(r.digestMatch && r.pagesMissing == 0, "round \(round): every page arrived, the given-back ones counted as sent")
            #expect((r.backgroundPagesOnInstallerThread > 0) == installThread, "round \(round): through the gate or not at all")
        }
    }

    @Test("a VMM that exits as soon as it read its last page leaves a complete migration, finished with the source")
    func exitRightAfterTheLastPage() throws {
        // Its last pages may have been put in place by the installer thread and not yet
        // taken back by the loop when the VMM's exit is seen: they count, nothing is missing.
        // The race is narrow: 30 rounds caught it in most runs of the code before.
        for round in 1...30 {
            let setup = try Setup(imagePages: 1024)
            defer { setup.source.terminate() }
            let destination = try setup.destination(["--install-thread", "always"])
            defer { destination.terminate() }
            let vmm = try setup.vmm(["--threads", "1"])
            defer { vmm.terminate() }
            #expect(vmm.wait(seconds: 60) == 0, "round \(round): \(vmm.capturedOutput)")
            #expect(destination.wait(seconds: 30) == 0, "round \(round): \(destination.capturedOutput)")
            #expect(setup.source.wait(seconds: 20) == 0, "round \(round): the source must hear the end: \(setup.source.capturedOutput)")
            let r = try #require(setup.destinationReport)
            #expect(r.digestMatch && r.pagesMissing == 0, "round \(round): \(r.warning ?? "")")
            #expect(r.warning == nil, "round \(round): \(r.warning ?? "")")
        }
    }

    @Test("a failed restore kills the VMM (--kill-vmm-on-failure), which would otherwise hang")
    func failedRestoreKillsTheVMM() throws {
        let setup = try Setup(sourceExtra: ["--no-background"])
        let destination = try setup.destination(["--reconnect-timeout", "1", "--peer-timeout", "1"])
        defer { destination.terminate() }
        let vmm = try setup.vmm(["--threads", "1", "--deadline", "120"])
        defer { vmm.terminate() }
        #expect(vmm.awaitLine(containing: "connected", seconds: 30) != nil, "\(vmm.capturedOutput)")
        #expect(destination.awaitLine(containing: "switched over", seconds: 30) != nil, "\(destination.capturedOutput)")
        setup.source.terminate(signal: SIGKILL)
        #expect(destination.wait(seconds: 30) == 1, "\(destination.capturedOutput)")
        #expect(vmm.awaitExit(seconds: 30) != nil)
        #expect(vmm.ending == .signal(SIGKILL), "\(String(describing: vmm.ending))")
        #expect(setup.destinationReport?.vmmKilled == true)
    }

    @Test("a VMM killed mid-restore ends the handler with a clear message")
    func killedVMM() throws {
        let setup = try Setup(sourceExtra: ["--no-background"])
        defer { setup.source.terminate() }
        let destination = try setup.destination()
        defer { destination.terminate() }
        let vmm = try setup.vmm(["--threads", "0", "--linger", "60"])
        #expect(destination.awaitLine(containing: "switched over", seconds: 30) != nil, "\(destination.capturedOutput)")
        vmm.terminate(signal: SIGKILL)
        #expect(destination.wait(seconds: 30) == 0, "\(destination.capturedOutput)")
        #expect(destination.capturedOutput.contains("exited before its memory was complete"), "\(destination.capturedOutput)")
        #expect(setup.destinationReport?.vmmExited == true)
    }

    @Test("regions that do not fit the source's image are refused by name")
    func regionsDoNotFit() throws {
        // The image is 16 MiB; a VMM describing 32 MiB of regions is refused at the handshake.
        let setup = try Setup()
        defer { setup.source.terminate() }
        let big = setup.scratch.appendingPathComponent("big.img").path
        _ = try MemoryFileTests.makeImage(pages: 8192, at: big)
        let destination = try setup.destination()
        defer { destination.terminate() }
        let vmm = try AgentProcess(executable: Self.standInVMM,
                                   arguments: ["--socket", setup.socket, "--image", big, "--deadline", "20", "--threads", "0"],
                                   captureStderr: true)
        defer { vmm.terminate() }
        #expect(destination.wait(seconds: 30) == 1, "\(destination.capturedOutput)")
        #expect(destination.capturedOutput.contains("arena size mismatch"), "\(destination.capturedOutput)")
    }
}
