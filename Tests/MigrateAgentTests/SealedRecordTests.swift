@testable import MigrateAgent
import Testing
import Wire

/// The record layer of `--encrypt`: records open only in order, intact, with
/// the key of their direction; and the receive buffer hands the parser the
/// same frames however the sealed bytes are split.
@Suite("sealed records")
struct SealedRecordTests {
    static let key = try! PresharedKey(bytes: Array(repeating: 0x5A, count: 32))
    static let destinationNonce = Array(repeating: UInt8(1), count: 32)
    static let sourceNonce = Array(repeating: UInt8(2), count: 32)
    static var keys: RecordKeys { RecordKeys(key, destinationNonce: destinationNonce, sourceNonce: sourceNonce) }

    /// Seals each plaintext as one record with a fresh sealer of `role`.
    static func seal(_ plaintexts: [[UInt8]], role: KeyProof.Role = .destination) -> [[UInt8]] {
        let sealer = RecordSealer(key: keys.forRole(role).seal)
        return plaintexts.map { plain in
            var out = [UInt8](repeating: 0, count: plain.count + SealedRecord.overhead)
            let size = plain.withUnsafeBytes { p in out.withUnsafeMutableBytes { sealer.seal(p, into: $0.baseAddress!) } }
            #expect(size == out.count)
            return out
        }
    }

    /// Opens `record` with `opener`; the plaintext, or the error.
    static func open(_ record: [UInt8], _ opener: RecordOpener) -> Result<[UInt8], WireError> {
        var out = [UInt8](repeating: 0, count: record.count)
        var error: WireError?
        let n = record.withUnsafeBytes { r in
            out.withUnsafeMutableBytes { o -> Int in
                do { return try opener.open(r, into: o.baseAddress!) } catch let e { error = e as? WireError; return 0 }
            }
        }
        if let error { return .failure(error) }
        return .success(Array(out[0..<n]))
    }

    /// `SealedRecord.size` of the record at the start of `bytes`.
    static func size(_ bytes: [UInt8], record: UInt64 = 0) throws -> Int? {
        try bytes.withUnsafeBytes { p throws -> Int? in try SealedRecord.size(at: p, record: record) }
    }

    static func rejectedRecord(_ result: Result<[UInt8], WireError>) -> UInt64? {
        if case .failure(.sealedRecord(let record, _)) = result { return record }
        return nil
    }

    let plaintexts: [[UInt8]] = [Array("first".utf8), Array(repeating: 0xEE, count: SealedRecord.maxPlaintext), [7]]

    @Test("records open in order, with the counter as nonce, and never show their plaintext")
    func inOrder() throws {
        let records = Self.seal(plaintexts)
        let opener = RecordOpener(key: Self.keys.forRole(.source).open)
        for (i, record) in records.enumerated() {
            #expect(record[4...].starts(with: plaintexts[i]) == false, "record \(i) carries its plaintext in the clear")
            #expect(try Self.open(record, opener).get() == plaintexts[i])
        }
        #expect(opener.counter == 3)
        // The same bytes sealed again give another ciphertext only because the counter moved on.
        let twice = Self.seal([plaintexts[0], plaintexts[0]])
        #expect(twice[0] != twice[1])
    }

    @Test("a flipped bit anywhere in a record (length, ciphertext or tag) is rejected, naming the record",
          arguments: [0, 3, 4, 8, 9, 24])
    func tamper(offset: Int) throws {
        var records = Self.seal([plaintexts[0], plaintexts[0]])
        records[1][offset] ^= 0x01
        let opener = RecordOpener(key: Self.keys.forRole(.source).open)
        #expect(try Self.open(records[0], opener).get() == plaintexts[0])
        #expect(Self.rejectedRecord(Self.open(records[1], opener)) == 1)
    }

    @Test("a truncated record is incomplete, and one whose length was cut to match does not open")
    func truncation() throws {
        let record = Self.seal([Array(repeating: 0x33, count: 100)])[0]
        let partial = Array(record.dropLast(1))
        let size = try Self.size(partial)
        #expect(size == record.count, "the length announces the whole record")
        #expect(size! > partial.count, "so the receiver waits for more")
        #expect(try Self.size(Array(record.prefix(3))) == nil)

        var cut = Array(record.prefix(4 + 60)) + Array(record.suffix(16))  // 60 bytes of ciphertext, the tag
        cut[0] = 60; cut[1] = 0; cut[2] = 0; cut[3] = 0
        let opener = RecordOpener(key: Self.keys.forRole(.source).open)
        #expect(Self.rejectedRecord(Self.open(cut, opener)) == 0)
    }

    @Test("a replayed or reordered record is rejected")
    func replayAndReorder() throws {
        let records = Self.seal(plaintexts)
        let opener = RecordOpener(key: Self.keys.forRole(.source).open)
        #expect(try Self.open(records[0], opener).get() == plaintexts[0])
        #expect(Self.rejectedRecord(Self.open(records[0], opener)) == 1, "record 0 replayed as record 1")

        let reordered = RecordOpener(key: Self.keys.forRole(.source).open)
        #expect(Self.rejectedRecord(Self.open(records[1], reordered)) == 0, "record 1 where record 0 belongs")
    }

    @Test("a record opens only with its direction's key, derived from this connection's nonces")
    func directionAndNonces() {
        let record = Self.seal([plaintexts[0]], role: .destination)[0]
        #expect(Self.rejectedRecord(Self.open(record, RecordOpener(key: Self.keys.forRole(.destination).open))) == 0,
                "a record reflected back to its sender")
        let otherConnection = RecordKeys(Self.key, destinationNonce: Self.sourceNonce, sourceNonce: Self.destinationNonce)
        #expect(Self.rejectedRecord(Self.open(record, RecordOpener(key: otherConnection.forRole(.source).open))) == 0,
                "a record from another connection")
        let otherKey = RecordKeys(try! PresharedKey(bytes: Array(repeating: 0x5B, count: 32)),
                                  destinationNonce: Self.destinationNonce, sourceNonce: Self.sourceNonce)
        #expect(Self.rejectedRecord(Self.open(record, RecordOpener(key: otherKey.forRole(.source).open))) == 0)
    }

    @Test("a length of 0 or above the maximum is refused before any byte is waited for", arguments: [0, SealedRecord.maxPlaintext + 1, Int(UInt32.max)])
    func lengthBounds(length: Int) {
        let bytes = withUnsafeBytes(of: UInt32(length).littleEndian) { Array($0) }
        #expect(throws: WireError.self) { try Self.size(bytes, record: 9) }
    }

    @Test("the options are bound into the key proof")
    func proofBindsOptions() {
        let plain = KeyProof.proof(Self.key, role: .destination, destinationNonce: Self.destinationNonce, sourceNonce: Self.sourceNonce)
        let encrypted = KeyProof.proof(Self.key, role: .destination, destinationNonce: Self.destinationNonce,
                                       sourceNonce: Self.sourceNonce, options: .encrypt)
        #expect(plain != encrypted)
        #expect(!KeyProof.verify(encrypted, Self.key, role: .destination, destinationNonce: Self.destinationNonce,
                                 sourceNonce: Self.sourceNonce))
    }

    /// A plain frame (the peer's proof), then frames sealed in records, fed to
    /// a receive buffer in chunks of `chunk` bytes: the parser sees every frame.
    @Test("the receive buffer opens records in place, however the bytes are split", arguments: [1, 7, 4096, 70_000, 1 << 20])
    func receiveBufferOpensInPlace(chunk: Int) throws {
        let limits = FrameLimits.session(pageSize: 4096, pageCount: 1024)
        var messages: [Message] = [.done(pagesReceived: 1, digest: 42)]
        for i in 0..<40 {
            messages.append(.pages(first: UInt64(i * 3), count: 3, flags: [], bytes: (0..<3 * 4096).map { UInt8(truncatingIfNeeded: $0 &* (i + 1)) }))
            messages.append(.request(first: UInt64(i), count: 1, hashes: []))
        }
        // The stream after the proof, cut into records the way the writer does: 64 KiB at most.
        let plainStream = messages.flatMap { $0.encoded() }
        var chunks: [[UInt8]] = []
        var at = 0
        var size = 1
        while at < plainStream.count {  // varied record sizes, some across frame boundaries
            let n = min(plainStream.count - at, min(size, SealedRecord.maxPlaintext))
            chunks.append(Array(plainStream[at..<at + n]))
            at += n
            size = size * 3 + 5
        }
        let proof = Message.authProof(Array(repeating: 9, count: 32)).encoded()
        let wire = proof + Self.seal(chunks).flatMap { $0 }

        var buffer = ReceiveBuffer(maxFrame: limits.largestFrame)
        let opener = RecordOpener(key: Self.keys.forRole(.source).open)
        var decoded: [Message] = []
        var sawProof = false
        var fed = 0
        while fed < wire.count {
            let tail = buffer.freeTail()
            let n = min(chunk, tail.count, wire.count - fed)
            wire.withUnsafeBytes { tail.baseAddress!.copyMemory(from: $0.baseAddress! + fed, byteCount: n) }
            fed += n
            buffer.didRead(n)
            while true {
                if sawProof { try buffer.openRecords(with: opener) }
                guard let frame = try FrameParser.parse(buffer.pending, limits: sawProof ? limits : .handshake) else { break }
                let message = try Message(frame)
                buffer.consume(frame.size)
                if !sawProof {
                    #expect(message.kind == .authProof)
                    sawProof = true
                    buffer.startOpening()
                } else {
                    decoded.append(message)
                }
            }
        }
        #expect(decoded == messages)
        #expect(opener.counter == UInt64(chunks.count))
    }
}
