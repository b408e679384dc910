import Crypto
import Wire

/// Mutual proof of the pre-shared key on one connection, with fresh nonces
/// from both sides: the destination sends its nonce, the source answers with
/// its own, the destination proves `HMAC-SHA256(key, label ‖ nonceD ‖ nonceS)`,
/// and only once that verified does the source send its proof (another label),
/// so a peer without the key learns nothing but a refusal. Labels differ per
/// role, so one side's proof is never valid as the other's. The options both
/// sides announced in their nonces (`AuthFlags`, e.g. `--encrypt`) are bound
/// into the proof when not empty, so they cannot be changed in transit.
enum KeyProof {
    enum Role {
        case destination, source

        var label: [UInt8] {
            switch self {
            case .destination: Array("migrate-agent v2 key proof: destination".utf8)
            case .source: Array("migrate-agent v2 key proof: source".utf8)
            }
        }
    }

    /// A fresh random nonce.
    static func nonce() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    /// The proof `role` sends over both nonces.
    static func proof(_ key: PresharedKey, role: Role, destinationNonce: [UInt8], sourceNonce: [UInt8],
                      options: AuthFlags = []) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message(role, destinationNonce, sourceNonce, options), using: key.key))
    }

    /// Whether `proof` is `role`'s proof over both nonces (constant-time compare).
    static func verify(_ proof: [UInt8], _ key: PresharedKey, role: Role, destinationNonce: [UInt8], sourceNonce: [UInt8],
                       options: AuthFlags = []) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: message(role, destinationNonce, sourceNonce, options),
                                               using: key.key)
    }

    /// label ‖ nonceD ‖ nonceS, then the options' two little-endian bytes when any is set.
    private static func message(_ role: Role, _ destinationNonce: [UInt8], _ sourceNonce: [UInt8], _ options: AuthFlags) -> [UInt8] {
        var bytes = role.label + destinationNonce + sourceNonce
        if !options.isEmpty { bytes += [UInt8(options.rawValue & 0xFF), UInt8(options.rawValue >> 8)] }
        return bytes
    }
}
