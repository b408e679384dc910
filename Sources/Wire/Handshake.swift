/// Which of the destination's two connections a `hello` opens.
public enum Channel: UInt8, Sendable, CaseIterable {
    /// Demand requests and their pages; never queues behind background data.
    case urgent = 0
    /// The background stream of every page.
    case bulk = 1
}

/// The destination's opening frame on each connection (40-byte payload):
/// channel `UInt8`, 3 reserved zero bytes, pageSize `UInt32`, pageCount `UInt64`,
/// sessionID `UInt128`, resumeCount `UInt64`.
public struct Hello: Equatable, Sendable {
    public static let payloadSize = 40

    public var channel: Channel
    /// Bytes per page; a power of two that fits in a `UInt32`.
    public var pageSize: Int
    public var pageCount: UInt64
    /// 0 asks for a new session (urgent connection only); otherwise the session to join or resume.
    public var sessionID: UInt128
    /// Pages the destination already holds (0 for a new session).
    public var resumeCount: UInt64

    public init(channel: Channel, pageSize: Int, pageCount: UInt64, sessionID: UInt128 = 0, resumeCount: UInt64 = 0) {
        self.channel = channel
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.sessionID = sessionID
        self.resumeCount = resumeCount
    }
}

/// The source's answer to `hello` (32-byte payload): pageSize `UInt32`, reserved `UInt32`,
/// pageCount `UInt64`, sessionID `UInt128` (never 0).
public struct Welcome: Equatable, Sendable {
    public static let payloadSize = 32

    public var pageSize: Int
    public var pageCount: UInt64
    public var sessionID: UInt128

    public init(pageSize: Int, pageCount: UInt64, sessionID: UInt128) {
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.sessionID = sessionID
    }
}

/// Checks a page geometry received in a handshake frame.
func validateGeometry(kind: FrameKind, pageSize: UInt32, pageCount: UInt64) throws(WireError) {
    guard pageSize != 0, pageSize & (pageSize &- 1) == 0 else {
        throw .badPayload(kind: kind, reason: "page size \(pageSize) is not a power of two")
    }
    let (bytes, overflow) = pageCount.multipliedReportingOverflow(by: UInt64(pageSize))
    guard !overflow, bytes <= UInt64(Int.max) else {
        throw .badPayload(kind: kind, reason: "\(pageCount) pages of \(pageSize) bytes overflow the address space")
    }
}
