import Wire

/// One connection's key proof as a small state machine. The agent hands it the
/// frames that arrive before `hello` (source) or `welcome` (destination); it
/// answers on the connection and says when the peer is proven. With no key
/// (`--insecure`) nothing is exchanged, and a peer that asks for a proof is
/// refused: the two agents must agree on whether a key is used.
///
/// With `encrypt` (`--encrypt`) the nonce carries `AuthFlags.encrypt`; a peer
/// whose nonce says otherwise is refused, naming both settings. Once a side has
/// sent its proof, everything it sends is sealed (`SealedRecord`); once it has
/// verified the peer's proof, everything it receives after that proof is
/// opened first. The keys come from `RecordKeys`.
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
    private let encrypt: Bool
    private let ownNonce = KeyProof.nonce()
    private var peerNonce: [UInt8]?
    private(set) var isProven: Bool

    /// `encrypt` needs a key (the command line refuses `--encrypt` with `--insecure`).
    init(key: PresharedKey?, role: KeyProof.Role, encrypt: Bool = false) {
        precondition(key != nil || !encrypt, "--encrypt needs a pre-shared key")
        self.key = key
        self.role = role
        self.encrypt = encrypt
        isProven = key == nil
    }

    private var options: AuthFlags { encrypt ? .encrypt : [] }

    /// Destination: the first frames on a new connection (its nonce, or nothing without a key).
    func start(on connection: TCPConnection) {
        guard key != nil, role == .destination else { return }
        connection.send(.authNonce(ownNonce, options: options))
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
        case (.source, .authNonce(let nonce, let peerOptions)) where peerNonce == nil:
            try checkAgreement(peerOptions)
            peerNonce = nonce
            connection.send(.authNonce(ownNonce, options: options))
            return .pending
        case (.source, .authProof(let proof)):
            guard let peerNonce, KeyProof.verify(proof, key, role: .destination, destinationNonce: peerNonce,
                                                 sourceNonce: ownNonce, options: options) else {
                throw .peer("the peer did not prove the pre-shared key")
            }
            connection.send(.authProof(KeyProof.proof(key, role: .source, destinationNonce: peerNonce,
                                                      sourceNonce: ownNonce, options: options)))
            if encrypt {
                let keys = RecordKeys(key, destinationNonce: peerNonce, sourceNonce: ownNonce).forRole(.source)
                connection.sealSending(key: keys.seal)  // our proof above is the last plain frame
                connection.openAfterCurrentFrame(key: keys.open)  // the peer's proof was its last
            }
            isProven = true
            return .proven
        case (.destination, .authNonce(let nonce, let peerOptions)) where peerNonce == nil:
            try checkAgreement(peerOptions)
            peerNonce = nonce
            connection.send(.authProof(KeyProof.proof(key, role: .destination, destinationNonce: ownNonce,
                                                      sourceNonce: nonce, options: options)))
            if encrypt {  // hello, which follows our proof, is the first sealed frame
                connection.sealSending(key: RecordKeys(key, destinationNonce: ownNonce, sourceNonce: nonce).forRole(.destination).seal)
            }
            return .pending
        case (.destination, .authProof(let proof)):
            guard let peerNonce, KeyProof.verify(proof, key, role: .source, destinationNonce: ownNonce,
                                                 sourceNonce: peerNonce, options: options) else {
                throw .peer("the source did not prove the pre-shared key")
            }
            if encrypt {
                connection.openAfterCurrentFrame(key: RecordKeys(key, destinationNonce: ownNonce, sourceNonce: peerNonce)
                    .forRole(.destination).open)
            }
            isProven = true
            return .proven
        default:
            throw .peer(role == .source
                ? "this source requires a pre-shared key proof first (the peer sent \(message.kind); is it running with --insecure?)"
                : "expected the source's key proof, got \(message.kind)")
        }
    }

    /// Both sides must agree on `--encrypt`; the refusal names each side's setting.
    private func checkAgreement(_ peerOptions: AuthFlags) throws(AgentError) {
        let peerEncrypts = peerOptions.contains(.encrypt)
        guard peerEncrypts != encrypt else { return }
        let (me, peer) = role == .source ? ("source", "destination") : ("destination", "source")
        throw .peer("encryption mismatch: the \(peer) runs \(peerEncrypts ? "with" : "without") --encrypt, "
            + "this \(me) \(encrypt ? "with" : "without") it; start both agents with --encrypt, or neither")
    }

    /// The report's line: what protects the connections.
    static func describe(key: PresharedKey?, encrypt: Bool) -> String {
        key == nil ? "none (--insecure)" : encrypt ? "pre-shared key, encrypted (AES-256-GCM)" : "pre-shared key"
    }
}
