import CLibUV
import Crypto
import Glibc
import Wire

/// One TCP connection carrying Wire frames. Reads land in a `ReceiveBuffer`
/// and each complete frame is handed to `onFrame` in place (its payload is only
/// valid during the call); writes go through a `FrameWriter`. A malformed frame
/// closes this connection with an error that names the reason, never the process.
/// On an encrypted connection (`sealSending`, `openAfterCurrentFrame`) the
/// writer seals and the receive buffer opens records before the parser sees
/// a byte; a record that does not open closes the connection the same way.
///
/// Threading: belongs to one `EventLoop`; every method runs on its thread.
/// Keeps itself alive from `init` until libuv's close callback.
public final class TCPConnection {
    /// Why a connection ended.
    public enum CloseReason: Sendable, CustomStringConvertible {
        /// We closed it.
        case local
        /// The peer closed its end.
        case endOfStream
        /// A socket error.
        case socket(String)
        /// The peer sent something malformed; the connection was closed.
        case protocolViolation(WireError)
        /// The peer sent an error frame.
        case peerError(WireErrorCode, String)
        /// We refused the peer with an error frame naming the reason.
        case refused(WireErrorCode, String)

        public var description: String {
            switch self {
            case .local: "closed locally"
            case .endOfStream: "the peer closed the connection"
            case .socket(let m): "socket error: \(m)"
            case .protocolViolation(let e):
                if case .sealedRecord = e { "protocol violation on the encrypted connection: \(e)" } else { "malformed frame from the peer: \(e)" }
            case .peerError(let code, let m): "the peer reported \(code): \(m)"
            case .refused(let code, let m): "refused the peer (\(code)): \(m)"
            }
        }
    }

    let loop: EventLoop
    let handle: UnsafeMutablePointer<uv_tcp_t>
    public let name: String
    /// What frames may carry; raise it once the handshake fixes the arena. The
    /// receive buffer grows to hold the largest frame the limits allow, so set it
    /// only after the current frame's payload is no longer needed.
    public var limits: FrameLimits {
        didSet { receive.grow(maxFrame: limits.largestFrame) }
    }
    /// Called for each complete frame, payload valid only during the call.
    public var onFrame: (ParsedFrame) -> Void = { _ in }
    /// Called once when the connection ends, for any reason.
    public var onClose: (CloseReason) -> Void = { _ in }
    /// Bytes received so far.
    public private(set) var bytesReceived: UInt64 = 0
    /// When the last bytes arrived (monotonic nanoseconds).
    public private(set) var lastReceiveNanos: UInt64 = EventLoop.nowNanos()
    /// When the last complete frame arrived: liveness counts frames, not bytes,
    /// so a peer trickling a byte at a time does not look alive.
    public private(set) var lastFrameNanos: UInt64 = EventLoop.nowNanos()

    /// Bytes this connection may decode per loop iteration (nil: no limit).
    /// libuv reads a readable stream up to 32 times per wake-up, so a bulk
    /// stream would hold the loop for tens of megabytes while a demand fault
    /// waits; past the budget, reading waits for the next iteration. It waits
    /// with the socket still armed: the read offers no room, libuv reports
    /// `UV_ENOBUFS`, and the level-triggered poll finds the socket readable on
    /// the next turn. Stopping and restarting the read cost two `epoll_ctl`
    /// calls per turn, about one per demand fault while the guest faults.
    public var readBudget: Int?
    /// While true nothing more is read (frames already received are still handed
    /// out): the receiver cannot take more now. Reading resumes when it is cleared.
    public var isPaused = false {
        didSet {
            guard isPaused != oldValue, !closed else { return }
            if isPaused { stopReading() } else { startReading() }
        }
    }
    private var readThisTurn = 0
    /// The loop turn `readThisTurn` counts.
    private var budgetTurn: UInt64 = 0

    private var receive: ReceiveBuffer
    private let writer = FrameWriter()
    /// Opens the peer's records once its key proof was consumed (nil: plain).
    private var opener: RecordOpener?
    private var openerAfterFrame: RecordOpener?
    private var closed = false
    private var reading = false
    private var connectRequest: UnsafeMutablePointer<uv_connect_t>?
    private var onConnect: ((String?) -> Void)?

    init(loop: EventLoop, name: String, limits: FrameLimits) {
        loop.assertOnLoop()
        self.loop = loop
        self.name = name
        self.limits = limits
        receive = ReceiveBuffer(maxFrame: limits.largestFrame)
        handle = .allocate(capacity: 1)
        uv_tcp_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

    private static func from(_ pointer: UnsafeMutableRawPointer?) -> TCPConnection {
        Unmanaged<TCPConnection>.fromOpaque(pointer!).takeUnretainedValue()
    }

    /// Connects to `address`; `done` gets nil or the error text.
    public static func connect(loop: EventLoop, to address: SocketAddress, name: String, limits: FrameLimits,
                               done: @escaping (TCPConnection, String?) -> Void) -> TCPConnection {
        let connection = TCPConnection(loop: loop, name: name, limits: limits)
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        connection.connectRequest = request
        connection.onConnect = { [unowned connection] error in done(connection, error) }
        request.pointee.data = Unmanaged.passUnretained(connection).toOpaque()
        let rc = address.withSockAddr { uv_tcp_connect(request, connection.handle, $0) { req, status in
            let connection = TCPConnection.from(req!.pointee.data)
            connection.connectRequest = nil
            req!.deallocate()
            connection.onConnect?(status == 0 ? nil : uvError(status))
            connection.onConnect = nil
        } }
        if rc != 0 {
            request.deallocate()
            connection.connectRequest = nil
            connection.onConnect = nil
            done(connection, uvError(rc))
        }
        return connection
    }

    /// Latency first: no Nagle delay, keepalive to notice a vanished peer, and the
    /// packets marked interactive (`SO_PRIORITY` 6, DSCP EF), so that a queue that
    /// honours priority (a `prio` or QoS-aware qdisc, a network with DiffServ) sends
    /// demand pages ahead of the bulk stream sharing the link.
    public func configureForDemand() {
        loop.assertOnLoop()
        uv_tcp_nodelay(handle, 1)
        uv_tcp_keepalive(handle, 1, 5)
        var fd: uv_os_fd_t = -1
        guard uv_fileno(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else { return }
        var tos = Int32(0xB8)  // DSCP EF (46) << 2; Linux maps it to TC_PRIO_INTERACTIVE
        _ = setsockopt(fd, Int32(IPPROTO_IP), IP_TOS, &tos, socklen_t(MemoryLayout<Int32>.size))
        var priority = Int32(6)  // TC_PRIO_INTERACTIVE, also where the TOS mapping does not apply
        _ = setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &priority, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Paces what this connection sends to at most `bytesPerSecond`, in the
    /// kernel (TCP's own pacing, whatever the qdisc; Linux 4.13+). Returns why
    /// the kernel refused it, or nil.
    public func limitSendRate(bytesPerSecond: UInt64) -> String? {
        loop.assertOnLoop()
        var fd: uv_os_fd_t = -1
        guard uv_fileno(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else {
            return "the connection has no socket"
        }
        var rate = bytesPerSecond
        guard setsockopt(fd, SOL_SOCKET, 47 /* SO_MAX_PACING_RATE */, &rate, socklen_t(MemoryLayout<UInt64>.size)) == 0 else {
            return "setsockopt(SO_MAX_PACING_RATE): \(String(cString: strerror(errno)))"
        }
        return nil
    }

    /// Starts reading frames.
    public func startReading() {
        loop.assertOnLoop()
        guard !closed, !reading, !isPaused else { return }
        reading = true
        let rc = uv_read_start(stream, { h, _, buf in
            let connection = TCPConnection.from(h!.pointee.data)
            let tail = connection.receive.freeTail()
            let size = connection.readSize(room: tail.count)
            buf!.pointee = uv_buf_init(tail.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(size))
        }, { s, nread, _ in
            TCPConnection.from(s!.pointee.data).didRead(nread)
        })
        if rc != 0 { close(.socket("uv_read_start: \(uvError(rc))")) }
    }

    /// What the next read may take: the room left, within this turn's budget.
    private func readSize(room: Int) -> Int {
        guard let readBudget else { return room }
        if budgetTurn != loop.turn {
            budgetTurn = loop.turn
            readThisTurn = 0
        }
        return min(room, max(0, readBudget - readThisTurn))
    }

    private func didRead(_ nread: Int) {
        if nread == Int(UV_ENOBUFS.rawValue) { return }  // this turn's budget is spent (`readSize`)
        if nread < 0 {
            close(nread == Int(UV_EOF.rawValue) ? .endOfStream : .socket(uvError(Int32(nread))))
            return
        }
        guard nread > 0 else { return }
        receive.didRead(nread)
        bytesReceived += UInt64(nread)
        lastReceiveNanos = EventLoop.nowNanos()
        defer { flush() }  // answers queued by the frame handlers go out in one write
        readThisTurn += nread
        while !closed {
            let frame: ParsedFrame?
            do {
                if let opener { try receive.openRecords(with: opener) }
                frame = try FrameParser.parse(receive.pending, limits: limits)
            } catch {
                fail(.protocolViolation, "\(error)", reason: .protocolViolation(error))
                return
            }
            guard let frame else { return }
            if frame.header.kind == .error {
                let (code, message) = Self.decodeError(frame)
                close(.peerError(code, message))
                return
            }
            lastFrameNanos = lastReceiveNanos
            onFrame(frame)
            receive.consume(frame.size)
            if let next = openerAfterFrame {  // the frame just handled was the peer's last plain one
                openerAfterFrame = nil
                opener = next
                receive.startOpening()
            }
        }
    }

    // MARK: Encryption

    /// Every frame queued from now on is sealed with `key` (frames already
    /// queued, such as our key proof, go out plain).
    func sealSending(key: SymmetricKey) {
        loop.assertOnLoop()
        writer.startSealing(RecordSealer(key: key))
    }

    /// Called while handling the peer's last plain frame (its key proof): every
    /// byte after it is a sealed record, opened with `key` before parsing.
    func openAfterCurrentFrame(key: SymmetricKey) {
        loop.assertOnLoop()
        precondition(opener == nil && openerAfterFrame == nil, "a connection starts opening once")
        openerAfterFrame = RecordOpener(key: key)
    }

    private func stopReading() {
        uv_read_stop(stream)
        reading = false
    }

    private static func decodeError(_ frame: ParsedFrame) -> (WireErrorCode, String) {
        if case .error(let code, let message)? = try? Message(frame) { return (code, message) }
        return (.protocolViolation, "malformed error frame")
    }

    // MARK: Writing

    /// Queues a frame whose payload stays valid until written (arena pages).
    public func send(kind: FrameKind, flags: UInt16 = 0, count: UInt32 = 0, arg: UInt64 = 0,
                     payload: UnsafeRawBufferPointer? = nil) {
        loop.assertOnLoop()
        guard !closed else { return }
        writer.enqueue(kind: kind, flags: flags, count: count, arg: arg, payload: payload)
    }

    /// Queues a control message (copied).
    public func send(_ message: Message) {
        loop.assertOnLoop()
        guard !closed else { return }
        writer.enqueue(encoded: message.encoded())
    }

    /// Called after a queued write completes (backpressure for the bulk stream).
    public var onWritable: () -> Void = {}

    /// Writes everything queued; call once after a batch of `send`s.
    public func flush() {
        loop.assertOnLoop()
        guard !closed else { return }
        let rc = writer.flush(stream, owner: Unmanaged.passUnretained(self).toOpaque()) { req, status in
            let connection = TCPConnection.from(req!.pointee.data)
            connection.writer.writeCompleted()
            connection.lastWriteNanos = EventLoop.nowNanos()
            if status < 0 {
                if !connection.closed { connection.close(.socket("write: \(uvError(status))")) }
                return
            }
            connection.flush()
            if let reason = connection.pendingClose, connection.writer.backlog == 0 {
                connection.close(reason)
            } else if !connection.closed {
                connection.onWritable()
            }
        }
        if rc < 0 { close(.socket("write: \(uvError(rc))")) }
    }

    /// Bytes queued and not yet handed to the kernel.
    public var backlog: Int { writer.backlog }

    /// When a queued write last completed: with a backlog, how long the peer has not been reading.
    public private(set) var lastWriteNanos: UInt64 = EventLoop.nowNanos()

    /// Sends an error frame naming the reason, then closes once it is written.
    public func fail(_ code: WireErrorCode, _ message: String, reason: CloseReason? = nil) {
        loop.assertOnLoop()
        guard !closed else { return }
        send(.error(code: code, message: String(decoding: message.utf8.prefix(1000), as: UTF8.self)))
        closeWhenFlushed(reason ?? .refused(code, message))
    }

    /// Writes what is queued, then closes (a plain `close` would drop queued frames).
    public func closeWhenFlushed(_ reason: CloseReason = .local) {
        loop.assertOnLoop()
        guard !closed else { return }
        flush()
        if writer.backlog == 0 { close(reason) } else { pendingClose = reason }
    }

    private var pendingClose: CloseReason?

    /// Closes the connection once; `onClose` is called with `reason`.
    public func close(_ reason: CloseReason = .local) {
        loop.assertOnLoop()
        guard !closed else { return }
        closed = true
        if reading { uv_read_stop(stream) }
        let callback = onClose
        onClose = { _ in }
        onFrame = { _ in }
        onWritable = {}
        // A half-done connect is cancelled by uv_close; its callback runs first.
        closeHandle(handle) { h in
            let connection = Unmanaged<TCPConnection>.fromOpaque(h!.pointee.data)
            connection.release()
        }
        callback(reason)
    }

    public var isClosed: Bool { closed }

    deinit { handle.deallocate() }
}
