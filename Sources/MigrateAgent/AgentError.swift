/// An error that ends an agent with one clear line and a non-zero exit.
public enum AgentError: Error, CustomStringConvertible, Sendable {
    /// Bad command-line or configuration input.
    case invalidArgument(String)
    /// The kernel or machine lacks something the run needs.
    case unsupported(String)
    /// A system call failed.
    case system(String)
    /// The peer broke the protocol, refused us, vanished or timed out.
    case peer(String)
    /// The migration ended without every page, or with wrong data.
    case migrationFailed(String)

    public var description: String {
        switch self {
        case .invalidArgument(let m), .unsupported(let m), .system(let m), .peer(let m), .migrationFailed(let m):
            return m
        }
    }
}
