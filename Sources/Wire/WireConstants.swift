/// Fixed numbers of the wire protocol, shared by both agents.
public enum WireConstants {
    /// The first four bytes of every frame: "PCMA" on the wire (little-endian 0x414D_4350).
    public static let magic: UInt32 = 0x414D_4350
    /// The protocol version this build speaks; byte 4 of every header.
    /// Version 2 added the key proof (`authNonce`, `authProof`) before `hello`;
    /// version 3 the `hotSet` frame; version 4 sends all-zero pages as `zeroPages`
    /// and hashes pages with XXH3-128.
    public static let protocolVersion: UInt8 = 4
    /// Size of the fixed frame header in bytes.
    public static let headerSize = 24
    /// Largest UTF-8 message an `error` frame may carry, in bytes.
    public static let maxErrorMessage = 1024
    /// Bytes of an `authNonce` or `authProof` payload.
    public static let authTokenSize = 32
}
