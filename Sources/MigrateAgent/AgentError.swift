/// An error that ends an agent with one clear line and a non-zero exit. Kernel
/// and wire errors keep their typed cause, so a caller can tell an errno or a
/// malformed frame from a message.
public enum AgentError: Error, CustomStringConvertible, Sendable {
    /// Bad command-line or configuration input.
    case invalidArgument(String)
    /// The kernel or machine lacks something the run needs.
    case unsupported(String)
    /// A userfaultfd call failed; the call and its errno are kept.
    case kernel(UffdError)
    /// Another system or libuv call failed.
    case system(String)
    /// The peer sent something malformed or out of order.
    case protocolViolation(String)
    /// The peer refused us, vanished or timed out.
    case peer(String)
    /// The migration ended without every page, or with wrong data.
    case migrationFailed(String)

    public var description: String {
        switch self {
        case .kernel(let error): error.description
        case .protocolViolation(let m): "protocol error: \(m)"
        case .invalidArgument(let m), .unsupported(let m), .system(let m), .peer(let m), .migrationFailed(let m): m
        }
    }
}
