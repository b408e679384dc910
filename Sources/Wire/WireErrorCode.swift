/// The reason code carried by an `error` frame (first two payload bytes).
public enum WireErrorCode: UInt16, Sendable, CaseIterable {
    /// The peer sent something malformed or out of order.
    case protocolViolation = 1
    /// The peer speaks another protocol version.
    case versionMismatch = 2
    /// Page size or page count differ between the agents.
    case sizeMismatch = 3
    /// A resume named a session the source does not know.
    case unknownSession = 4
    /// The source already serves another destination.
    case busy = 5
    /// The sender hit a bug or a local failure.
    case internalError = 6
    /// The peer stopped answering.
    case peerTimeout = 7
    /// The migration was ended on purpose and will not resume: the operator cancelled
    /// it, or the VM being restored is gone (a VMM that exited before its memory was complete).
    case cancelled = 8
    /// The peer did not prove the pre-shared key, or the agents disagree on using one.
    case authenticationFailed = 9
}
