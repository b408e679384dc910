/// Why a byte stream was rejected. Any of these closes the connection it came from;
/// `description` names the reason and the offending values for the log, and `code`
/// is what to put in the `error` frame sent back.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The first four bytes are not "PCMA": not a migration stream, or out of sync.
    case badMagic(found: UInt32)
    /// The peer speaks another protocol version.
    case unsupportedVersion(found: UInt8, supported: UInt8)
    /// Header byte 5 names no known frame kind.
    case unknownKind(UInt8)
    /// The header announces more payload than this kind may ever carry.
    case frameTooLong(kind: FrameKind, length: Int, max: Int)
    /// The payload length does not match what the header's count and flags imply.
    case badLength(kind: FrameKind, length: Int, expected: Int)
    /// Pages `first ..< first + count` are not all inside the arena (or the sum overflows).
    case pageOutOfRange(first: UInt64, count: UInt64, pageCount: UInt64)
    /// A frame covers more pages than `FrameLimits.maxPagesPerFrame`.
    case tooManyPages(count: Int, max: Int)
    /// A page-run frame with a count of 0.
    case emptyPageRun(kind: FrameKind)
    /// A reserved header field, flag bit or payload byte is not zero.
    case reservedNotZero(kind: FrameKind, field: String, value: UInt64)
    /// The payload is the right size but its contents are invalid.
    case badPayload(kind: FrameKind, reason: String)
    /// A well-formed frame that is not allowed here (e.g. a page frame before the handshake).
    case unexpectedFrame(kind: FrameKind)
    /// On an encrypted connection (`--encrypt`): a sealed record that does not
    /// open (altered, truncated, replayed, reordered or from another key), or
    /// whose length is out of bounds. `record` counts the records of that
    /// direction from 0.
    case sealedRecord(record: UInt64, reason: String)

    public var description: String {
        switch self {
        case .badMagic(let found):
            "bad magic 0x\(hex(found)) (expected 0x\(hex(WireConstants.magic)) \"PCMA\"): not a migration stream, or out of sync"
        case .unsupportedVersion(let found, let supported):
            "unsupported protocol version \(found) (this agent speaks version \(supported))"
        case .unknownKind(let raw):
            "unknown frame kind \(raw)"
        case .frameTooLong(let kind, let length, let max):
            "\(kind) frame announces \(length) payload bytes, more than the limit of \(max)"
        case .badLength(let kind, let length, let expected):
            "\(kind) frame has \(length) payload bytes, expected \(expected)"
        case .pageOutOfRange(let first, let count, let pageCount):
            "pages \(first) + \(count) lie outside the arena of \(pageCount) pages"
        case .tooManyPages(let count, let max):
            "frame covers \(count) pages, more than the limit of \(max) per frame"
        case .emptyPageRun(let kind):
            "\(kind) frame with a page count of 0"
        case .reservedNotZero(let kind, let field, let value):
            "\(kind) frame: reserved \(field) must be 0, found 0x\(hex(value))"
        case .badPayload(let kind, let reason):
            "invalid \(kind) payload: \(reason)"
        case .unexpectedFrame(let kind):
            "unexpected \(kind) frame at this stage of the session (e.g. a page frame before the handshake)"
        case .sealedRecord(let record, let reason):
            "sealed record \(record) rejected: \(reason)"
        }
    }

    /// The code to send in an `error` frame when closing a connection for this reason.
    public var code: WireErrorCode {
        switch self {
        case .unsupportedVersion: .versionMismatch
        default: .protocolViolation
        }
    }
}

private func hex(_ value: some BinaryInteger) -> String {
    String(value, radix: 16, uppercase: true)
}
