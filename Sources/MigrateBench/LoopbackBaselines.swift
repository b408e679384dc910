import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import SyntheticGuest
import MigrateDemo

/// The loopback baselines, measured against a `LoopbackServer` in another
/// process: the round trip of a 16-byte request and a 4 KiB reply (what a
/// demand fault costs on the wire at best), and bulk bandwidth (what a
/// background stream can reach at best).
/// Threading: the controlling thread calls `measure…`; each measurement runs
/// on a measurement thread of its own (so that pinning it leaves the caller alone).
/// Over a link (`LinkHosts`), the server runs in the source's namespace
/// (`ip netns exec`) and the client's sockets are made in the destination's.
final class LoopbackBaselines {
    private let server: AgentProcess
    private let host: String
    private let port: UInt16
    private let cores: Int
    private let clientNamespace: String?
    private let what: String

    init(executable: String, logDirectory: String, cores: Int, link: LinkHosts? = nil) throws(AgentError) {
        self.cores = cores
        var command = (executable, ["bench", "--rtt-server"])
        if let link {
            command = (LinkHosts.ip!, ["netns", "exec", link.source, executable, "bench", "--rtt-server",
                                       "--rtt-listen", link.sourceAddress])
            what = "TCP round trip across the veth pair shaped to \(link.rate) (idle), between processes in two network "
                + "namespaces: 16-byte request, 4 KiB reply"
        } else {
            what = "TCP round trip on 127.0.0.1 between two processes: 16-byte request, 4 KiB reply"
        }
        clientNamespace = link?.destination
        server = try AgentProcess(executable: command.0, arguments: command.1,
                                  stderrPath: "\(logDirectory)/rtt-server\(link.map { "-" + $0.rate.name } ?? "").log")
        guard let address = server.awaitLine(prefix: "listening on ", seconds: 30),
              let port = address.split(separator: ":").last.flatMap({ UInt16($0) }) else {
            server.stop(signal: SIGKILL)
            throw .system("the loopback server did not start listening\n\(server.stderrTail(name: "rtt-server"))")
        }
        self.port = port
        host = link?.sourceAddress ?? "127.0.0.1"
    }

    private func connect() throws(AgentError) -> LoopbackSocket {
        try NetworkNamespace.run(in: clientNamespace) { () throws(AgentError) -> LoopbackSocket in
            try LoopbackSocket.connect(host: host, port: port)
        }
    }

    /// Ends the server process.
    func close() { server.stop() }

    /// Round trips, timed one by one from the client. Pinned placements also pin the server's thread.
    func roundTrips(samples: Int, placement: Placement, id: String = "loopback-rtt") throws(AgentError) -> MeasuredLatency {
        switch placement {
        case .unpinned: CPUPlacement.unpin(server.pid, cores: cores)
        case .sameCPU: CPUPlacement.pin(server.pid, to: 0)
        case .crossCPU: CPUPlacement.pin(server.pid, to: 1)
        }
        defer { CPUPlacement.unpin(server.pid, cores: cores) }
        let connection = try connect()
        defer { connection.close() }
        nonisolated(unsafe) let socket = connection
        let warmup = FirstTouchBaseline.warmup(samples)
        let thread = DeadlineThread("bench-rtt") { () -> LatencySamples? in
            if placement != .unpinned { CPUPlacement.pin(to: 0) }
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: LoopbackServer.replySize, alignment: 64)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: LoopbackServer.replySize)
            var mode = UInt8(ascii: "r")
            guard socket.writeAll(&mode, 1) else { return nil }
            let result = LatencySamples(capacity: samples + warmup)
            for _ in 0..<(samples + warmup) {
                let start = EventLoop.nowNanos()
                guard socket.writeAll(buffer, LoopbackServer.requestSize),
                      socket.readExactly(buffer, LoopbackServer.replySize) else { return nil }
                result.append(EventLoop.nowNanos() - start)
            }
            return result
        }
        guard let measured = thread.join(within: 120) else {
            connection.close()
            throw .system("the loopback round-trip baseline did not finish within 120 s")
        }
        guard let measured else { throw .system("the loopback server closed the connection during the round trips") }
        return MeasuredLatency(id: id, what: what, placement: placement, histogram: measured.histogram(droppingFirst: warmup))
    }

    /// `transfers` bulk transfers of `bytes` each from the server, read 256 KiB at a time.
    func bandwidth(bytes: Int, transfers: Int) throws(AgentError) -> BandwidthBaseline {
        var rates: [Double] = []
        for _ in 0..<transfers {
            let connection = try connect()
            nonisolated(unsafe) let socket = connection
            let thread = DeadlineThread("bench-bandwidth") { () -> Double? in
                let chunk = 256 * 1024
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
                defer { buffer.deallocate() }
                var request: [UInt8] = [UInt8(ascii: "b")]
                withUnsafeBytes(of: UInt64(bytes).littleEndian) { request += $0 }
                let start = EventLoop.nowNanos()
                guard socket.writeAll(request, request.count) else { return nil }
                var received = 0
                while received < bytes {
                    let n = socket.readSome(buffer, chunk)
                    if n <= 0 { return nil }
                    received += n
                }
                return Double(bytes) / (Double(EventLoop.nowNanos() - start) / 1e9)
            }
            let rate = thread.join(within: 120)
            connection.close()
            guard let rate else { throw .system("the loopback bandwidth baseline did not finish within 120 s") }
            guard let rate else { throw .system("the loopback server ended a bulk transfer early") }
            rates.append(rate.rounded())
        }
        let sorted = rates.sorted()
        return BandwidthBaseline(bytesPerTransfer: bytes, transfers: rates, best: sorted.last ?? 0,
                                 median: sorted.isEmpty ? 0 : sorted[sorted.count / 2])
    }
}
