import Crypto
import Dispatch
import FoundationEssentials
import Glibc
import Wire

/// The two keys of one encrypted connection, one per direction, derived with
/// HKDF-SHA256 from the pre-shared key, salted with both nonces of that
/// connection's key proof (destination's first), with a label per direction.
/// Fresh nonces make the keys fresh per connection; separate keys make a
/// record sent one way useless the other way, so each direction can count its
/// records from 0 (`SealedRecord`).
struct RecordKeys {
    let destinationToSource: SymmetricKey
    let sourceToDestination: SymmetricKey

    static let destinationToSourceLabel = Array("migrate-agent v2 record key: destination to source".utf8)
    static let sourceToDestinationLabel = Array("migrate-agent v2 record key: source to destination".utf8)

    init(_ key: PresharedKey, destinationNonce: [UInt8], sourceNonce: [UInt8]) {
        let salt = destinationNonce + sourceNonce
        destinationToSource = HKDF<SHA256>.deriveKey(inputKeyMaterial: key.key, salt: salt,
                                                      info: Self.destinationToSourceLabel, outputByteCount: 32)
        sourceToDestination = HKDF<SHA256>.deriveKey(inputKeyMaterial: key.key, salt: salt,
                                                      info: Self.sourceToDestinationLabel, outputByteCount: 32)
    }

    /// (the key this side seals with, the key it opens with).
    func forRole(_ role: KeyProof.Role) -> (seal: SymmetricKey, open: SymmetricKey) {
        role == .destination ? (destinationToSource, sourceToDestination) : (sourceToDestination, destinationToSource)
    }
}

/// Seals one direction of a connection into `SealedRecord`s: AES-256-GCM
/// (swift-crypto), the nonce the record counter. Chosen over ChaCha20-Poly1305
/// by measuring both through swift-crypto on the development machine (AES-NI
/// present): an idle 256 MiB migration ran at 775 MB/s with AES-GCM against
/// 524 MB/s with ChaCha20-Poly1305 (BENCHMARKS.md, "Encryption cost"). On a
/// CPU without AES instructions ChaCha20-Poly1305 would be the better choice;
/// the record format does not depend on it, the protocol fixes one.
///
/// swift-crypto's public API returns the sealed bytes in new `Data` values, so
/// each record costs a few allocations and copies inside swift-crypto (never
/// per frame: a record carries up to 64 KiB of frames); the record is then
/// copied into the caller's buffer. BoringSSL itself can seal and open in
/// place, but swift-crypto does not export that API.
///
/// Threading: its connection's loop thread only.
final class RecordSealer {
    private let key: SymmetricKey
    /// Records sealed so far: the next record's number.
    private(set) var counter: UInt64 = 0

    init(key: SymmetricKey) { self.key = key }

    /// Seals `plaintext` (1 ... `SealedRecord.maxPlaintext` bytes) as the next
    /// record at `out`, which must have room for `plaintext.count +
    /// SealedRecord.overhead` bytes; returns the record's size. A nonce is
    /// never reused: sealing stops the process rather than wrap the counter,
    /// which at a record per nanosecond would take 584 years.
    func seal(_ plaintext: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) -> Int {
        precondition(plaintext.count > 0 && plaintext.count <= SealedRecord.maxPlaintext, "record of \(plaintext.count) bytes")
        precondition(counter < UInt64.max, "record counter exhausted")
        out.storeBytes(of: UInt32(plaintext.count).littleEndian, as: UInt32.self)
        let box: AES.GCM.SealedBox
        do {
            box = try SealedRecord.withNonce(counter) { nonce in
                try AES.GCM.seal(plaintext, using: key, nonce: try AES.GCM.Nonce(data: nonce),
                                    authenticating: UnsafeRawBufferPointer(start: out, count: SealedRecord.lengthSize))
            }
        } catch {
            // Only a wrong key or nonce size fails here, both fixed above: a bug.
            fatalError("AES-GCM seal failed: \(error)")
        }
        counter += 1
        box.ciphertext.withUnsafeBytes { (out + SealedRecord.lengthSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        box.tag.withUnsafeBytes { (out + SealedRecord.lengthSize + plaintext.count).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return plaintext.count + SealedRecord.overhead
    }
}

/// Opens the records of one direction, in order: record `n` must open with
/// nonce `n`, so a replayed, dropped or reordered record fails like an
/// altered one.
///
/// Threading: its connection's loop thread only.
final class RecordOpener {
    private let key: SymmetricKey
    /// Records opened so far: the number the next record must carry.
    private(set) var counter: UInt64 = 0

    init(key: SymmetricKey) { self.key = key }

    /// Opens the complete record `record` (its size from
    /// `SealedRecord.size(at:record:)`) and writes its plaintext to `out`,
    /// which may lie anywhere at or before the record's ciphertext in the same
    /// buffer (opening in place); returns the plaintext's size. Throws
    /// `WireError.sealedRecord` naming the record when it does not open.
    func open(_ record: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) throws(WireError) -> Int {
        let length = record.count - SealedRecord.overhead
        precondition(length > 0, "record shorter than its overhead")
        let base = record.baseAddress!
        let plaintext: Data
        do {
            plaintext = try SealedRecord.withNonce(counter) { nonce in
                let box = try AES.GCM.SealedBox(
                    nonce: try AES.GCM.Nonce(data: nonce),
                    ciphertext: UnsafeRawBufferPointer(start: base + SealedRecord.lengthSize, count: length),
                    tag: UnsafeRawBufferPointer(start: base + SealedRecord.lengthSize + length, count: SealedRecord.tagSize))
                return try AES.GCM.open(box, using: key,
                                           authenticating: UnsafeRawBufferPointer(start: base, count: SealedRecord.lengthSize))
            }
        } catch {
            throw .sealedRecord(record: counter, reason: "it does not authenticate (altered, cut, replayed or "
                + "reordered on the way, or sealed with another key)")
        }
        guard plaintext.count == length else {
            throw .sealedRecord(record: counter, reason: "it opened to \(plaintext.count) bytes, not \(length)")
        }
        counter += 1
        plaintext.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: length) }
        return length
    }
}
