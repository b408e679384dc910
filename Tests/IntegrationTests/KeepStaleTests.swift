import Foundation
import MigrateAgent
import Testing

/// Issue 10, the destination's async switch: `--keep-stale-on-failure` lets a
/// guest run on its stale pages when the source is lost after switch-over.
/// The release itself needs RWP_ASYNC (Linux 7.3): `scripts/rwp-vm/checks/keep-stale-check`
/// runs it in the VM. Here (no RWP) the option must say it cannot apply and the
/// migration must fail as without it: the guest stopped, nothing kept.
@Suite("keep stale pages on failure", .serialized)
struct KeepStaleTests {
    @Test("without the rwp backend the option is declined by name and the guest is stopped")
    func declinedWithoutRWP() throws {
        let scratch = AgentHarness.scratchDirectory()
        let reportPath = scratch.appendingPathComponent("d.json").path
        // No background stream: after switch-over the stale pages move only on demand, so
        // some are still stale when the source dies.
        let (source, address) = try AgentHarness.startSource(arena: "32MiB", extra: [
            "--guest-threads", "2", "--dirty-rate", "50000", "--precopy-rounds", "1", "--no-background",
        ])
        defer { source.terminate() }
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "32MiB", "--protection", "minor", "--guest-threads", "2",
            "--keep-stale-on-failure", "--reconnect-timeout", "0", "--report-json", reportPath,
        ])
        defer { destination.terminate() }
        try #require(destination.awaitLine(containing: "switched over", seconds: 60) != nil, "\(destination.capturedOutput)")
        source.terminate()  // SIGKILL: the source is gone with stale pages still at the destination
        let exit = destination.wait(seconds: 60)
        #expect(exit != nil && exit != 0, "the migration must fail: \(destination.capturedOutput)")
        #expect(destination.capturedOutput.contains("--keep-stale-on-failure needs the rwp backend"), "\(destination.capturedOutput)")
        let report = try #require(ReportFormatting.read(DestinationReport.self, fromFile: reportPath))
        #expect(report.staleKeptPages == nil)
        #expect(report.error != nil)
    }
}
