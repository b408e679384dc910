import Glibc
import MigrateAgent

/// The other process of the loopback baselines (`migrate-agent bench
/// --rtt-server`): listens on 127.0.0.1 (or, for a link's baselines, on
/// `--rtt-listen ADDRESS` inside the source's namespace), prints `listening on HOST:PORT`,
/// and serves one connection at a time, chosen by its first byte:
/// - `r` (round trips): reads a 16-byte request, answers 4 KiB, until EOF;
/// - `b` (bulk): reads a little-endian UInt64 byte count and streams that many bytes.
/// The benchmark stops it when done; it also exits when no connection comes
/// for `idleSeconds` (longer than a full run, which re-measures the floor after
/// all scenarios), so it never outlives a benchmark that died. Threading: runs on the calling thread.
public enum LoopbackServer {
    public static let requestSize = 16
    public static let replySize = 4096
    static let bulkChunk = 1 << 20

    public static func run(host: String = "127.0.0.1", idleSeconds: Double = 1800) throws(AgentError) {
        let (listener, port) = try LoopbackSocket.listen(host: host)
        Console.out("listening on \(host):\(port)")
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bulkChunk, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5A, count: bulkChunk)
        while let connection = try listener.accept(within: idleSeconds) {
            var mode: UInt8 = 0
            guard connection.readExactly(&mode, 1) else { continue }
            switch mode {
            case UInt8(ascii: "r"):
                while connection.readExactly(buffer, requestSize), connection.writeAll(buffer, replySize) {}
            case UInt8(ascii: "b"):
                var count: UInt64 = 0
                guard connection.readExactly(&count, 8) else { continue }
                var left = Int(UInt64(littleEndian: count))
                while left > 0, connection.writeAll(buffer, min(left, bulkChunk)) { left -= min(left, bulkChunk) }
            default:
                Console.err("rtt-server: unknown mode byte \(mode)")
            }
            connection.close()
        }
    }
}
