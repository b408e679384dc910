import Foundation
import MigrateAgent
import Testing

/// Issue 10: the source tracks its guest's accesses before it listens, and the
/// pages the guest used most go first. Real processes, real userfaultfd (the
/// minor-sampling emulation here; RWP in the 7.3 VM).
@Suite("hot-first migration", .serialized)
struct HotFirstTests {
    private func migrate(hotFirst: Bool) throws -> (SourceReport, DestinationReport) {
        let scratch = AgentHarness.scratchDirectory()
        let sourcePath = scratch.appendingPathComponent("s.json").path
        let destinationPath = scratch.appendingPathComponent("d.json").path
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: [
            "--guest-threads", "2", "--dirty-rate", "2000", "--guest-pattern", "hotset", "--guest-access-rate", "50000",
            "--track-seconds", "0.6", "--track-interval", "100", hotFirst ? "--hot-first" : "--no-hot-first",
            "--report-json", sourcePath,
        ])
        defer { source.terminate() }
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "64MiB", "--guest-threads", "2", "--pattern", "hotset",
            "--protection", "minor", "--report-json", destinationPath,
        ])
        let destinationExit = destination.wait(seconds: 120)
        let sourceExit = source.wait(seconds: 30)
        #expect(destinationExit == 0, "destination: \(destination.capturedOutput)")
        #expect(sourceExit == 0, "source: \(source.capturedOutput)")
        let s = try #require(ReportFormatting.read(SourceReport.self, fromFile: sourcePath), "source: \(source.capturedOutput)")
        let d = try #require(ReportFormatting.read(DestinationReport.self, fromFile: destinationPath))
        #expect(d.digestMatch && s.destinationDigestMatch)
        #expect(d.arenaVerified && d.guest?.mismatches == 0)
        return (s, d)
    }

    @Test("the hot set the warm-up found goes first and is resident before most other pages")
    func hotSetFirst() throws {
        let (s, d) = try migrate(hotFirst: true)
        let workingSet = try #require(s.workingSet)
        #expect(workingSet.method == "minor-sampling" || workingSet.method == "rwp-async")
        #expect(workingSet.pagesAccessedPerInterval.count == 6)
        #expect(workingSet.hotSetPages > 0 && workingSet.hotSetPages < d.pageCount / 4)
        // The estimate against the pages the guest says it touched.
        #expect((workingSet.recall ?? 0) > 0.5 && (workingSet.precision ?? 0) > 0.9)
        #expect(d.hotSetPages == workingSet.hotSetPages)
        #expect(s.streamHeadPages >= workingSet.hotSetPages)
        let residentAt = try #require(d.hotSetResidentWithPages, "the hot set never became resident")
        // Hot first: when the last hot page arrived, the rest of the arena had mostly not.
        #expect(residentAt <= s.streamHeadPages + d.demandPages, "\(residentAt) pages present")
        #expect(residentAt < d.pageCount / 2, "\(residentAt) of \(d.pageCount) pages present")
    }

    @Test("in address order the same hot set is announced but is complete only with most of the arena")
    func addressOrder() throws {
        let (s, d) = try migrate(hotFirst: false)
        #expect(s.streamHeadPages == 0)
        #expect(d.hotSetPages > 0)
        let residentAt = try #require(d.hotSetResidentWithPages)
        // The hot set (a shared 10% spread over the arena) ends near the arena's end.
        #expect(residentAt > d.pageCount / 2, "\(residentAt) of \(d.pageCount) pages present")
    }

    @Test("a tracker the kernel lacks, or a warm-up of an image, is refused with one line before listening")
    func refusals() throws {
        let probe = try KernelProbe.run()
        var cases: [([String], String)] = [
            (["--memory-file", "/proc/self/exe", "--track-seconds", "1"], "--track-seconds needs a running guest"),
            (["--arena", "8MiB", "--track-seconds", "0.5", "--access-tracking", "sideways"], "--access-tracking must be"),
            (["--arena", "8MiB", "--track-seconds", "-1"], "--track-seconds"),
        ]
        if !AccessTrackingMethod.rwpAsync.isAvailable(on: probe) {
            cases.append((["--arena", "8MiB", "--track-seconds", "0.5", "--access-tracking", "rwp-async"], "RWP_ASYNC"))
        }
        for (arguments, message) in cases {
            let source = try AgentHarness.start(["source", "--listen", "127.0.0.1:0"] + arguments)
            defer { source.terminate() }
            let exit = source.wait(seconds: 30)
            #expect(exit != nil && exit != 0, "\(arguments): \(source.capturedOutput)")
            #expect(source.capturedOutput.contains(message), "\(arguments): \(source.capturedOutput)")
            #expect(!source.capturedOutput.contains("listening on"), "\(arguments) listened: \(source.capturedOutput)")
        }
    }
}
