import MigrateAgent
import Testing

/// The message of an `AgentError.invalidArgument` thrown by `body`, or nil
/// (with a recorded issue) when `body` succeeds or throws something else.
func invalidArgumentMessage(
    _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
) -> String? {
    do {
        try body()
        Issue.record("expected AgentError.invalidArgument, nothing was thrown", sourceLocation: sourceLocation)
    } catch AgentError.invalidArgument(let message) {
        return message
    } catch {
        Issue.record("expected AgentError.invalidArgument, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
