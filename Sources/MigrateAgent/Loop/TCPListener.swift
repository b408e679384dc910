import CLibUV
import Glibc
import Wire

/// A listening TCP socket that hands each accepted connection to `onAccept`.
/// Threading: belongs to one `EventLoop`; loop thread only. Keeps itself alive until closed.
public final class TCPListener {
    private let loop: EventLoop
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    private let limits: FrameLimits
    private let onAccept: (TCPConnection) -> Void
    /// The bound address (the real port when 0 was asked for).
    public private(set) var address: SocketAddress

    public init(loop: EventLoop, address: SocketAddress, limits: FrameLimits, backlog: Int32 = 128,
                onAccept: @escaping (TCPConnection) -> Void) throws(AgentError) {
        loop.assertOnLoop()
        self.loop = loop
        self.limits = limits
        self.onAccept = onAccept
        self.address = address
        handle = .allocate(capacity: 1)
        uv_tcp_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        let stream = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
        var rc = address.withSockAddr { uv_tcp_bind(handle, $0, 0) }
        if rc == 0 {
            rc = uv_listen(stream, backlog) { server, status in
                let listener = Unmanaged<TCPListener>.fromOpaque(server!.pointee.data).takeUnretainedValue()
                if status == 0 { listener.accept() }
            }
        }
        guard rc == 0 else {
            close()
            let hint = rc == Int32(UV_EADDRINUSE.rawValue) ? ": the port is already in use" : ""
            throw .system("cannot listen on \(address): \(uvError(rc))\(hint)")
        }
        self.address = boundAddress() ?? address
    }

    private func boundAddress() -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutableBytes(of: &storage) { raw in
            uv_tcp_getsockname(handle, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard rc == 0 else { return nil }
        let port = withUnsafeBytes(of: &storage) { raw -> UInt16 in
            // sin_port and sin6_port sit at the same offset, in network order.
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
        return SocketAddress(host: address.host, port: port)
    }

    private func accept() {
        let connection = TCPConnection(loop: loop, name: "peer", limits: limits)
        let stream = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
        if uv_accept(stream, connection.stream) == 0 {
            onAccept(connection)
        } else {
            connection.close()
        }
    }

    public func close() {
        closeHandle(handle) { h in
            let listener = Unmanaged<TCPListener>.fromOpaque(h!.pointee.data)
            h!.deallocate()
            listener.release()
        }
    }
}
