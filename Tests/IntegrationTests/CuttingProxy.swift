import Foundation
import Glibc
import MigrateAgent
import SyntheticGuest

/// A TCP relay on 127.0.0.1 between a destination and its source that breaks
/// connections the way a network does: each of the first `cuts` connections it
/// accepts is cut (both directions shut down at once) after a number of relayed
/// bytes drawn from a seeded generator; later connections pass untouched.
///
/// Threading: an accept thread and two copy threads per connection, blocking
/// sockets with receive timeouts so that every thread ends after `stop`.
final class CuttingProxy: @unchecked Sendable {
    private let listenFD: Int32
    let port: UInt16
    private let targetPort: UInt16
    private let lock = NSLock()
    private var rng: SplitMix64
    private var cutsLeft: Int
    private let cutRange: ClosedRange<Int>
    private var stopped = false
    private var sockets: [Int32] = []
    /// Connections cut so far.
    private(set) var cutCount = 0

    init(target: String, cuts: Int, cutAfterBytes: ClosedRange<Int>, seed: UInt64) throws {
        targetPort = UInt16(target.split(separator: ":").last!)!
        rng = SplitMix64(seed: seed)
        cutsLeft = cuts
        cutRange = cutAfterBytes
        let listener = try FakeListener()
        listenFD = dup(listener.fd)
        port = listener.port
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var address: String { "127.0.0.1:\(port)" }

    var cuts: Int { lock.withLock { cutCount } }

    /// Stops accepting and closes every relayed connection.
    func stop() {
        let all = lock.withLock { () -> [Int32] in
            stopped = true
            return sockets
        }
        for fd in all { shutdown(fd, Int32(SHUT_RDWR)) }
        shutdown(listenFD, Int32(SHUT_RDWR))
    }

    deinit {
        stop()
        close(listenFD)
        for fd in sockets { close(fd) }
    }

    private func acceptLoop() {
        while !lock.withLock({ stopped }) {
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return
            }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var sa = FakePeer.loopback(port: targetPort)
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { close(client); close(server); continue }
            let cutAfter: Int? = lock.withLock {
                sockets += [client, server]
                guard cutsLeft > 0 else { return nil }
                cutsLeft -= 1
                return cutRange.lowerBound + Int(rng.next() % UInt64(cutRange.count))
            }
            let link = Link(a: client, b: server, cutAfter: cutAfter) { [self] in lock.withLock { cutCount += 1 } }
            Thread.detachNewThread { link.copy(from: client, to: server) }
            Thread.detachNewThread { link.copy(from: server, to: client) }
        }
    }

    /// One relayed connection: both directions count against one cut point.
    private final class Link: @unchecked Sendable {
        let a: Int32, b: Int32
        let cutAfter: Int?
        let onCut: () -> Void
        private let lock = NSLock()
        private var relayed = 0
        private var cut = false
        private var reported = false

        init(a: Int32, b: Int32, cutAfter: Int?, onCut: @escaping () -> Void) {
            (self.a, self.b, self.cutAfter, self.onCut) = (a, b, cutAfter, onCut)
        }

        func copy(from: Int32, to: Int32) {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { break }
                // Forward only up to the cut point, then cut: the peer sees a stream that stops mid-frame.
                let allowed: Int = lock.withLock {
                    guard !cut else { return 0 }
                    guard let cutAfter else { return n }
                    let room = max(0, cutAfter - relayed)
                    relayed += min(n, room)
                    if room <= n { cut = true }
                    return min(n, room)
                }
                if allowed > 0 {
                    let sent = buffer.withUnsafeBytes { send(to, $0.baseAddress, allowed, Int32(MSG_NOSIGNAL)) }
                    if sent != allowed { break }
                }
                let justCut: Bool? = lock.withLock {
                    guard cut else { return nil }
                    defer { reported = true }
                    return !reported
                }
                if let justCut {
                    if justCut { onCut() }
                    break
                }
            }
            shutdown(a, Int32(SHUT_RDWR))
            shutdown(b, Int32(SHUT_RDWR))
        }
    }
}
