import Wire

/// One connection's key proof as a small state machine. The agent hands it the
/// frames that arrive before `hello` (source) or `welcome` (destination); it
/// answers on the connection and says when the peer is proven. With no key
/// (`--insecure`) nothing is exchanged, and a peer that asks for a proof is
/// refused: the two agents must agree on whether a key is used.
///
/// Threading: its connection's loop thread only.
final class ConnectionAuth {
    enum Outcome {
        /// More frames are needed.
        case pending
        /// The peer proved the key (or no key is used): the handshake goes on.
        case proven
    }

    private let key: PresharedKey?
    private let role: KeyProof.Role
    private let ownNonce = KeyProof.nonce()
    private var peerNonce: [UInt8]?
    private(set) var isProven: Bool

    init(key: PresharedKey?, role: KeyProof.Role) {
        self.key = key
        self.role = role
        isProven = key == nil
    }

    /// Destination: the first frames on a new connection (its nonce, or nothing without a key).
    func start(on connection: TCPConnection) {
        guard key != nil, role == .destination else { return }
        connection.send(.authNonce(ownNonce))
    }

    /// Handles a frame that arrived before the peer was proven. Throws
    /// `.peer` with the reason when the peer must be refused.
    func receive(_ message: Message, on connection: TCPConnection) throws(AgentError) -> Outcome {
        guard let key else {
            if case .authNonce = message {
                throw .peer("the peer wants to prove a pre-shared key, but this agent runs without one (--insecure)")
            }
            return .proven
        }
        switch (role, message) {
        case (.source, .authNonce(let nonce)) where peerNonce == nil:
            peerNonce = nonce
            connection.send(.authNonce(ownNonce))
            return .pending
        case (.source, .authProof(let proof)):
            guard let peerNonce, KeyProof.verify(proof, key, role: .destination, destinationNonce: peerNonce, sourceNonce: ownNonce) else {
                throw .peer("the peer did not prove the pre-shared key")
            }
            connection.send(.authProof(KeyProof.proof(key, role: .source, destinationNonce: peerNonce, sourceNonce: ownNonce)))
            isProven = true
            return .proven
        case (.destination, .authNonce(let nonce)) where peerNonce == nil:
            peerNonce = nonce
            connection.send(.authProof(KeyProof.proof(key, role: .destination, destinationNonce: ownNonce, sourceNonce: nonce)))
            return .pending
        case (.destination, .authProof(let proof)):
            guard let peerNonce, KeyProof.verify(proof, key, role: .source, destinationNonce: ownNonce, sourceNonce: peerNonce) else {
                throw .peer("the source did not prove the pre-shared key")
            }
            isProven = true
            return .proven
        default:
            throw .peer(role == .source
                ? "this source requires a pre-shared key proof first (the peer sent \(message.kind); is it running with --insecure?)"
                : "expected the source's key proof, got \(message.kind)")
        }
    }
}
