import Foundation
import Glibc
import MigrateAgent
import MigrateBench
import MigrateDemo
import Testing

/// The two agents on two hosts of their own: network namespaces joined by a
/// veth pair, which the test creates and removes. The link goes down in the
/// middle of a migration and comes back; the destination resumes the session
/// and the migration completes with matching digests.
@Suite("a link that goes down and up", .serialized)
struct LinkOutageTests {
    static let ip = "/usr/sbin/ip"
    static let canMakeNamespaces = getuid() == 0 && FileManager.default.isExecutableFile(atPath: ip)

    /// Two namespaces and a veth pair between them; removed by `remove`.
    struct TestHosts {
        let source: String, destination: String
        let sourceAddress: String, destinationAddress: String
        let destinationLink = "mad\(getpid() % 100_000)"

        init() throws {
            let tag = "\(getpid())"
            let subnet = 64 + Int(getpid() % 128)  // a /24 of the project's own, per test process
            (source, destination) = ("ma-src-\(tag)", "ma-dst-\(tag)")
            (sourceAddress, destinationAddress) = ("10.77.\(subnet).1", "10.77.\(subnet).2")
            let sourceLink = "mas\(getpid() % 100_000)"
            for command in VethPair.commands(namespaces: (source, destination), devices: (sourceLink, destinationLink),
                                             addresses: (sourceAddress, destinationAddress)) {
                try Self.run(command)
            }
        }

        static func run(_ arguments: [String]) throws {
            let process = try AgentProcess(executable: LinkOutageTests.ip, arguments: arguments, captureStderr: true)
            guard process.wait(seconds: 30) == 0 else {
                throw HostError.failed("ip \(arguments.joined(separator: " ")): \(process.capturedOutput)")
            }
        }

        func setDestinationLink(up: Bool) throws {
            try Self.run(["-n", destination, "link", "set", destinationLink, up ? "up" : "down"])
        }

        func remove() {
            _ = try? Self.run(["netns", "del", source])  // deleting a namespace removes its end of the veth pair
            _ = try? Self.run(["netns", "del", destination])
        }

        enum HostError: Error { case failed(String) }
    }

    @Test("the link goes down for longer than the peer timeout and comes back; the session resumes",
          .enabled(if: canMakeNamespaces, "needs root and iproute2 (ip) to make network namespaces"))
    func linkDownAndUp() throws {
        let hosts = try TestHosts()
        defer { hosts.remove() }
        let scratch = AgentHarness.scratchDirectory()
        let reports = (source: scratch.appendingPathComponent("s.json").path, destination: scratch.appendingPathComponent("d.json").path)
        let source = try AgentHarness.startBare([
            "netns", "exec", hosts.source, AgentHarness.binary, "source", "--listen", "\(hosts.sourceAddress):0",
            "--arena", "256MiB", "--no-background", "--psk-file", AgentHarness.keyFile, "--report-json", reports.source,
        ], executable: Self.ip)
        defer { source.terminate() }
        let address = try #require(source.awaitLine(prefix: "listening on ", seconds: 60), "\(source.capturedOutput)")
        let destination = try AgentHarness.startBare([
            "netns", "exec", hosts.destination, AgentHarness.binary, "destination", "--connect", address,
            "--arena", "256MiB", "--guest-threads", "1", "--pattern", "sequential", "--peer-timeout", "1",
            "--reconnect-timeout", "60", "--psk-file", AgentHarness.keyFile, "--report-json", reports.destination,
        ], executable: Self.ip)
        defer { destination.terminate() }
        #expect(destination.awaitLine(containing: "switched over", seconds: 60) != nil, "\(destination.capturedOutput)")

        try hosts.setDestinationLink(up: false)
        // The outage itself: longer than the destination's peer timeout, so it notices and reconnects.
        #expect(destination.awaitLine(containing: "lost the source", seconds: 30) != nil, "\(destination.capturedOutput)")
        usleep(1_500_000)  // the link stays down a while longer; reconnect attempts fail meanwhile
        try hosts.setDestinationLink(up: true)

        #expect(destination.wait(seconds: 120) == 0, "\(destination.capturedOutput)")
        #expect(source.wait(seconds: 60) == 0, "\(source.capturedOutput)")
        let d = ReportFormatting.read(DestinationReport.self, fromFile: reports.destination)
        #expect(d?.digestMatch == true && d?.arenaVerified == true)
        #expect((d?.resumes ?? 0) >= 1, "\(destination.capturedOutput)")
    }
}
