import Foundation
import Glibc
import Wire

/// A TCP relay between a destination and a source on 127.0.0.1, standing in
/// for the network: it forwards every connection it accepts to the source,
/// byte for byte, and can flip one byte of the source's stream on one of
/// them (`flipConnection`, counted from 0 in accept order: the destination
/// opens urgent first, bulk second) once `flipAfter` bytes went through. It
/// also counts, per connection, the frame magics ("PCMA") it saw going from
/// the source: on an encrypted connection only the key-proof frames show.
///
/// One thread per direction with blocking sockets; every socket has a
/// receive timeout, and `stop` (or deinit) closes everything.
final class TamperingRelay: @unchecked Sendable {
    let address: String
    private let listener: Int32
    private let target: UInt16
    private let flipConnection: Int?
    private let flipAfter: Int
    private let lock = NSLock()
    private var sockets: [Int32] = []
    private var magics: [Int: Int] = [:]
    private var flipped = false
    private var stopped = false

    init(to target: String, flipConnection: Int? = nil, flipAfter: Int = 0) throws {
        self.target = UInt16(target.split(separator: ":").last!)!
        self.flipConnection = flipConnection
        self.flipAfter = flipAfter
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = FakePeer.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { close(fd); throw FakePeer.PeerError.failed("relay listen: errno \(errno)") }
        listener = fd
        address = "127.0.0.1:\(UInt16(bigEndian: sa.sin_port))"
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    /// Whether the byte was flipped (the stream got that far).
    var didFlip: Bool { lock.withLock { flipped } }

    /// Frame magics seen in the source's stream of connection `index`.
    func magicsFromSource(connection index: Int) -> Int { lock.withLock { magics[index] ?? 0 } }

    func stop() {
        let all: [Int32] = lock.withLock {
            guard !stopped else { return [] }
            stopped = true
            return sockets + [listener]
        }
        for fd in all { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop() {
        var index = 0
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var sa = FakePeer.loopback(port: target)
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let keep = lock.withLock { () -> Bool in
                sockets += [client, upstream]
                return !stopped
            }
            guard rc == 0, keep else { shutdown(client, Int32(SHUT_RDWR)); shutdown(upstream, Int32(SHUT_RDWR)); continue }
            let connection = index
            index += 1
            Thread.detachNewThread { [self] in pump(from: client, to: upstream, connection: connection, fromSource: false) }
            Thread.detachNewThread { [self] in pump(from: upstream, to: client, connection: connection, fromSource: true) }
        }
    }

    private func pump(from: Int32, to: Int32, connection: Int, fromSource: Bool) {
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(from, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var total = 0
        var carry: [UInt8] = []  // the last 3 bytes, so a magic split across reads is counted
        let magic = withUnsafeBytes(of: WireConstants.magic.littleEndian) { Array($0) }
        let flipHere = fromSource && connection == flipConnection
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            if flipHere, total <= flipAfter, flipAfter < total + n {
                buffer[flipAfter - total] ^= 0x40
                lock.withLock { flipped = true }
            }
            if fromSource {
                let window = carry + buffer[0..<n]
                var found = 0
                if window.count >= 4 { for i in 0...(window.count - 4) where window[i] == magic[0] && Array(window[i..<i + 4]) == magic { found += 1 } }
                carry = Array(window.suffix(3))
                if found > 0 { lock.withLock { magics[connection, default: 0] += found } }
            }
            total += n
            var sent = 0
            while sent < n {
                let m = buffer.withUnsafeBytes { send(to, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                if m <= 0 { break }
                sent += m
            }
            if sent < n { break }
        }
        shutdown(to, Int32(SHUT_WR))
        shutdown(from, Int32(SHUT_RD))
    }
}
