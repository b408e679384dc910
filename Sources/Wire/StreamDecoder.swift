/// An incremental decoder over a byte stream, for control paths and tests: feed bytes
/// in any chunking, take whole messages out. Any split of a stream yields the same
/// messages. After the first `WireError` the decoder stays failed: every later call
/// throws that error again and fed bytes are dropped.
public struct StreamDecoder: Sendable {
    /// The limits frames are checked against; raise them once the handshake is done.
    public var limits: FrameLimits
    /// The error that stopped this decoder, if any.
    public private(set) var failure: WireError?

    private var buffer: [UInt8] = []
    private var start = 0

    public init(limits: FrameLimits = .handshake) {
        self.limits = limits
    }

    /// Bytes fed but not yet consumed by a decoded message.
    public var bufferedByteCount: Int { buffer.count - start }

    /// Appends received bytes.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil else { return }
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// Appends received bytes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        guard failure == nil else { return }
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// The next complete message, nil if more bytes are needed.
    public mutating func nextMessage() throws(WireError) -> Message? {
        if let failure { throw failure }
        let limits = self.limits
        let start = self.start
        let result: Result<(Message, Int)?, WireError> = buffer.withUnsafeBytes { all in
            do throws(WireError) {
                guard let frame = try FrameParser.parse(UnsafeRawBufferPointer(rebasing: all[start...]), limits: limits)
                else { return .success(nil) }
                return .success((try Message(frame), frame.size))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(nil):
            return nil
        case .success(let (message, size)?):
            self.start += size
            if self.start == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                self.start = 0
            }
            return message
        case .failure(let error):
            failure = error
            buffer = []
            self.start = 0
            throw error
        }
    }

    /// Drops consumed bytes once they are at least half the buffer, so the copy
    /// costs no more than the bytes already decoded.
    private mutating func compact() {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
    }
}
