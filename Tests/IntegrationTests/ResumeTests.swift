import Foundation
import Glibc
import MigrateAgent
import Testing
import Wire

/// A dropped connection after switch-over is resumed: the destination
/// reconnects, proves the key again, names its session and what it holds,
/// asks again for every page it still waits on, and the migration completes
/// with matching digests. Connections are cut by a relay at random offsets.
@Suite("resume after a dropped connection", .serialized)
struct ResumeTests {
    /// Seeds of the cut points; `RESUME_STRESS_RUNS=100` makes the stress run.
    static let seeds: [UInt64] = {
        let runs = ProcessInfo.processInfo.environment["RESUME_STRESS_RUNS"].flatMap(Int.init) ?? 3
        return (1...max(1, runs)).map { UInt64($0) }
    }()

    @Test("connections cut at random offsets are resumed and the migration completes", arguments: seeds)
    func cutConnections(seed: UInt64) throws {
        let scratch = AgentHarness.scratchDirectory()
        let reports = (source: scratch.appendingPathComponent("s.json").path, destination: scratch.appendingPathComponent("d.json").path)
        // Every third seed paces the stream (--max-bandwidth): a resumed bulk connection is paced again.
        let paced = seed % 3 == 0 ? ["--max-bandwidth", "128MiB"] : []
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: ["--report-json", reports.source] + paced)
        defer { source.terminate() }
        // Past the switch-over state (4 bytes a page, 64 KiB here): a cut before it
        // ends the migration by design, the guest then still runs on the source.
        let proxy = try CuttingProxy(target: address, cuts: 3, cutAfterBytes: (256 << 10)...(40 << 20), seed: seed)
        defer { proxy.stop() }
        let destination = try AgentHarness.start([
            "destination", "--connect", proxy.address, "--arena", "64MiB", "--guest-threads", "2",
            "--report-json", reports.destination, "--reconnect-timeout", "20",
        ])
        defer { destination.terminate() }
        #expect(destination.wait(seconds: 90) == 0, "\(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "\(source.capturedOutput)")
        let d = ReportFormatting.read(DestinationReport.self, fromFile: reports.destination)
        let s = ReportFormatting.read(SourceReport.self, fromFile: reports.source)
        #expect(d?.digestMatch == true)
        #expect(d?.arenaVerified == true)
        #expect(proxy.cuts >= 1, "the relay must have cut at least one connection")
        #expect((d?.resumes ?? 0) >= 1, "a cut must have been resumed: \(destination.capturedOutput)")
        #expect(s?.resumes == d?.resumes, "both agents count the same resumes")
        #expect(!source.capturedOutput.contains("not paced"), "\(source.capturedOutput)")
    }

    @Test("a resume needs the key: a peer that knows the session id but not the key gets nothing")
    func resumeNeedsTheKey() throws {
        let (source, address) = try AgentHarness.startSource(arena: "8MiB")
        defer { source.terminate() }
        let peer = try FakePeer.connect(to: address)
        peer.send(Message.hello(Hello(channel: .urgent, pageSize: 4096, pageCount: 2048, sessionID: 1, resumeCount: 1)).encoded())
        let reply = FakePeer.messages(in: peer.readUntilClosed())
        guard case .error(let code, _)? = reply.first, reply.count == 1 else {
            Issue.record("expected one refusal, got \(reply)")
            return
        }
        #expect(code == .authenticationFailed)
    }
}
