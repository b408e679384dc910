import Glibc
import MigrateAgent

/// A blocking TCP socket (on 127.0.0.1, or an IPv4 address of a link's
/// namespace) for the loopback and link baselines: plain
/// POSIX calls, no event loop, so the figures are the kernel's and not a
/// framework's. `EINTR` is retried in `retrying`.
/// Threading: one thread uses a socket at a time.
final class LoopbackSocket {
    private(set) var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// A listening socket on `host` (an IPv4 address) with a port the kernel picks.
    static func listen(host: String = "127.0.0.1") throws(AgentError) -> (LoopbackSocket, port: UInt16) {
        let socket = try make()
        var one: Int32 = 1
        setsockopt(socket.fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = try ipv4(host, port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(socket.fd, 4) == 0 else { throw failure("bind/listen on \(host)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket.fd, $0, &length) }
        }
        return (socket, UInt16(bigEndian: address.sin_port))
    }

    /// Waits up to `seconds` for a connection; nil on the deadline.
    func accept(within seconds: Double) throws(AgentError) -> LoopbackSocket? {
        var fds = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let rc = retrying { poll(&fds, 1, Int32(seconds * 1000)) }
        if rc == 0 { return nil }
        let client = retrying { Glibc.accept(fd, nil, nil) }
        guard rc > 0, client >= 0 else { throw Self.failure("accept") }
        let socket = LoopbackSocket(fd: client)
        socket.setNoDelay()
        return socket
    }

    static func connect(host: String = "127.0.0.1", port: UInt16) throws(AgentError) -> LoopbackSocket {
        let socket = try make()
        var address = try ipv4(host, port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw failure("connect to \(host):\(port)") }
        socket.setNoDelay()
        return socket
    }

    /// Writes all `count` bytes; false when the peer is gone.
    func writeAll(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = retrying { send(fd, bytes + done, count - done, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    /// Reads exactly `count` bytes; false at EOF or on an error.
    func readExactly(_ bytes: UnsafeMutableRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = retrying { recv(fd, bytes + done, count - done, 0) }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    /// Reads what is there, up to `count` bytes: the byte count, 0 at EOF, -1 on an error.
    func readSome(_ bytes: UnsafeMutableRawPointer, _ count: Int) -> Int {
        retrying { recv(fd, bytes, count, 0) }
    }

    private func setNoDelay() {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    private static func make() throws(AgentError) -> LoopbackSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket") }
        return LoopbackSocket(fd: fd)
    }

    private static func ipv4(_ host: String, port: UInt16) throws(AgentError) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw .invalidArgument("not an IPv4 address: \(host)") }
        return address
    }

    private static func failure(_ what: String) -> AgentError {
        .system("\(what): \(String(cString: strerror(errno)))")
    }
}

/// Retries a system call that failed with EINTR.
@inline(__always) func retrying<T: BinaryInteger>(_ call: () -> T) -> T {
    while true {
        let rc = call()
        if rc < 0 && errno == EINTR { continue }
        return rc
    }
}
