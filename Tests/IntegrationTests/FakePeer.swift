import Foundation
import Glibc
import Wire

/// A raw TCP peer written by the test, for sending what a real agent never
/// would (garbage, a wrong version, an index out of range). Blocking sockets
/// with receive timeouts, so no call waits forever.
final class FakePeer {
    let fd: Int32

    private init(fd: Int32) {
        self.fd = fd
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Connects to `address` ("127.0.0.1:PORT").
    static func connect(to address: String) throws -> FakePeer {
        let port = UInt16(address.split(separator: ":").last!)!
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = loopback(port: port)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw PeerError.failed("connect to \(address): errno \(errno)") }
        return FakePeer(fd: fd)
    }

    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private var decoder = StreamDecoder(limits: .handshake)

    /// The next message from the peer, decoded with `limits` (a session's to read
    /// pages), or nil when it closed, timed out or sent garbage.
    func nextMessage(limits: FrameLimits = .handshake) -> Message? {
        decoder.limits = limits
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            do { if let message = try decoder.nextMessage() { return message } } catch { return nil }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            decoder.feed(buffer[0..<n])
        }
    }

    /// Reads until the peer closes or the timeout; returns everything received.
    func readUntilClosed() -> [UInt8] {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return all }
            all += buffer[0..<n]
        }
    }

    /// The messages in `bytes`, decoded with generous limits (errors end the list).
    static func messages(in bytes: [UInt8], limits: FrameLimits = .handshake) -> [Message] {
        var decoder = StreamDecoder(limits: limits)
        decoder.feed(bytes)
        var result: [Message] = []
        while let message = try? decoder.nextMessage() { result.append(message) }
        return result
    }

    static func loopback(port: UInt16) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return sa
    }

    enum PeerError: Error { case failed(String) }
}

/// A fake source: listens on a free port and accepts one connection.
final class FakeListener {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var sa = FakePeer.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { close(fd); throw FakePeer.PeerError.failed("listen: errno \(errno)") }
        port = UInt16(bigEndian: sa.sin_port)
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    var address: String { "127.0.0.1:\(port)" }

    /// Accepts one connection (30 s at most) and wraps it.
    func accept() throws -> FakePeerConnection {
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { throw FakePeer.PeerError.failed("accept: errno \(errno)") }
        return FakePeerConnection(fd: client)
    }
}

/// An accepted connection of a `FakeListener`.
final class FakePeerConnection {
    let fd: Int32
    init(fd: Int32) {
        self.fd = fd
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private var decoder = StreamDecoder()

    /// Reads the destination's hello.
    func readHello() -> Hello? {
        if case .hello(let hello)? = readMessage(limits: .handshake) { return hello }
        return nil
    }

    /// The next message, decoded with `limits`; nil when the peer closed, timed out or sent garbage.
    func readMessage(limits: FrameLimits) -> Message? {
        decoder.limits = limits
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            do { if let message = try decoder.nextMessage() { return message } } catch { return nil }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            decoder.feed(buffer[0..<n])
        }
    }
}
