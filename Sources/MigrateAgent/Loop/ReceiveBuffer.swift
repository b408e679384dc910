import Wire

/// The bytes read from one connection and not yet decoded: a flat buffer that
/// libuv reads straight into, so a page payload is handed to `UFFDIO_COPY`
/// where it landed, with no copy. A partial frame is moved to the front only
/// when the free tail gets too short for a whole frame.
///
/// On an encrypted connection (`startOpening`) the bytes read are sealed
/// records (`SealedRecord`); `openRecords` opens each complete one in place,
/// writing its plaintext right behind the plaintext already opened, so the
/// frame parser sees one contiguous plain stream in the same buffer. Layout:
/// `start ..< opened` plaintext not yet decoded, `opened ..< sealed` spent
/// record bytes (a gap), `sealed ..< end` records not yet opened. Without
/// encryption `opened == sealed == end` and nothing else changes.
///
/// Threading: owned by its connection, loop thread only.
struct ReceiveBuffer: ~Copyable {
    private var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    private var start = 0
    private var opened = 0
    private var sealed = 0
    private var end = 0
    private var maxFrame: Int
    /// Extra room for one sealed record besides a partial frame (0 when not encrypted).
    private var recordSlack = 0
    private var isSealed = false

    /// `maxFrame` is the largest frame the limits allow; the buffer holds two.
    init(maxFrame: Int) {
        self.maxFrame = maxFrame
        capacity = Self.capacity(maxFrame: maxFrame, recordSlack: 0)
        base = .allocate(byteCount: capacity, alignment: 4096)
    }

    deinit { base.deallocate() }

    private static func capacity(maxFrame: Int, recordSlack: Int) -> Int {
        max(2 * maxFrame, 256 * 1024) + 2 * recordSlack
    }

    private var minimumTail: Int { maxFrame + recordSlack }

    /// Where the next read should land.
    mutating func freeTail() -> UnsafeMutableRawBufferPointer {
        // Back to the front whenever everything was consumed (free: nothing to move), so
        // a connection of small frames keeps touching the same few pages of its buffer.
        if start == end || capacity - end < minimumTail { compact(into: base) }
        return UnsafeMutableRawBufferPointer(start: base + end, count: capacity - end)
    }

    /// Moves the undecoded plaintext, then the unopened records, to the front of
    /// `target` (this buffer or a bigger one), dropping the gap between them.
    private mutating func compact(into target: UnsafeMutableRawPointer) {
        let plain = opened - start
        let records = end - sealed
        if plain > 0 { target.copyMemory(from: base + start, byteCount: plain) }
        if records > 0 { (target + plain).copyMemory(from: base + sealed, byteCount: records) }
        start = 0
        opened = plain
        sealed = plain
        end = plain + records
    }

    mutating func didRead(_ count: Int) {
        end += count
        if !isSealed { opened = end; sealed = end }
    }

    /// The undecoded plaintext.
    var pending: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + start, count: opened - start) }

    /// Makes room for frames of up to `maxFrame` bytes, keeping the undecoded
    /// bytes; never shrinks. Moves the bytes, so a frame handler calls it only
    /// once it is done with its frame's payload.
    mutating func grow(maxFrame: Int) {
        self.maxFrame = max(self.maxFrame, maxFrame)
        let needed = Self.capacity(maxFrame: self.maxFrame, recordSlack: recordSlack)
        guard needed > capacity else { return }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: needed, alignment: 4096)
        compact(into: bigger)
        base.deallocate()
        base = bigger
        capacity = needed
    }

    /// From here on the bytes not yet decoded are sealed records: call it
    /// right after consuming the peer's last plain frame (its key proof).
    mutating func startOpening() {
        precondition(!isSealed, "a connection starts opening once")
        isSealed = true
        opened = start  // everything after the last plain frame is sealed
        sealed = start
        recordSlack = SealedRecord.maxPlaintext + SealedRecord.overhead
        grow(maxFrame: maxFrame)
    }

    /// Opens every complete record that has arrived, in order. Throws
    /// `WireError.sealedRecord` for the first that does not open (or has a
    /// length out of bounds); the connection must then close.
    mutating func openRecords(with opener: RecordOpener) throws(WireError) {
        while true {
            let records = UnsafeRawBufferPointer(start: base + sealed, count: end - sealed)
            guard let size = try SealedRecord.size(at: records, record: opener.counter), records.count >= size else { return }
            opened += try opener.open(UnsafeRawBufferPointer(rebasing: records[0..<size]), into: base + opened)
            sealed += size
        }
    }

    mutating func consume(_ count: Int) {
        start += count
        if start == opened {  // no plaintext left: the gap closes, and with no records left, all rewinds
            if sealed == end { start = 0; opened = 0; sealed = 0; end = 0 } else { start = sealed; opened = sealed }
        }
    }
}
