import Wire

extension Message {
    /// Decodes a frame's message; a malformed one is a protocol violation that
    /// names the frame kind and what was wrong with it.
    static func decode(_ frame: ParsedFrame) throws(AgentError) -> Message {
        do { return try Message(frame) } catch {
            throw .protocolViolation("malformed \(frame.header.kind) frame: \(error)")
        }
    }
}
