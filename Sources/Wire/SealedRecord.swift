/// The record layer of an encrypted connection (`--encrypt`, `AuthFlags.encrypt`).
///
/// From each side's `authProof` on, the bytes that side sends are no longer
/// frames but sealed records, each carrying the next chunk of the same frame
/// stream (a chunk may hold several frames or part of one; frames are parsed
/// from the opened bytes exactly as on a plain connection):
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 4 | length `n` of the plaintext, little-endian, 1 ... `maxPlaintext` |
/// | 4 | n | ciphertext (AES-256-GCM) |
/// | 4 + n | 16 | tag, authenticating the ciphertext and the 4 length bytes |
///
/// The nonce is not sent: it is the record's number in its direction (0, 1,
/// 2, ...) as 8 little-endian bytes followed by 4 zero bytes, under a key of
/// that direction's own (`RecordKeys` in MigrateAgent: HKDF-SHA256 of the
/// pre-shared key, salted with both nonces of the connection's key proof), so
/// a record that is altered, cut, dropped, replayed or reordered does not
/// open. A counter never repeats: a connection would end long before 2^64
/// records.
public enum SealedRecord {
    /// Bytes of the length prefix.
    public static let lengthSize = 4
    /// Bytes of the authentication tag.
    public static let tagSize = 16
    /// Bytes a record adds to its plaintext.
    public static let overhead = lengthSize + tagSize
    /// Most plaintext bytes in one record: a sender splits its stream into
    /// records of at most this size, a receiver refuses a larger length.
    public static let maxPlaintext = 64 * 1024
    /// Bytes of the AEAD nonce.
    public static let nonceSize = 12

    /// The size of the record at the start of `bytes` once it is complete, or
    /// nil while its 4 length bytes have not all arrived. Throws when the
    /// length is 0 or above `maxPlaintext` (record number `record`, for the
    /// message), so no peer value sizes a buffer.
    public static func size(at bytes: UnsafeRawBufferPointer, record: UInt64) throws(WireError) -> Int? {
        guard bytes.count >= lengthSize, let base = bytes.baseAddress else { return nil }
        let length = Int(base.loadLE(at: 0, as: UInt32.self))
        guard length > 0, length <= maxPlaintext else {
            throw .sealedRecord(record: record, reason: "its length \(length) is outside 1...\(maxPlaintext)")
        }
        return lengthSize + length + tagSize
    }

    /// The 12-byte nonce of record number `counter`, as its bytes (no heap):
    /// the counter little-endian, then 4 zero bytes.
    @inlinable
    public static func withNonce<R>(_ counter: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var nonce: (UInt64, UInt32) = (counter.littleEndian, 0)
        return try withUnsafeBytes(of: &nonce) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<nonceSize])) }
    }
}
