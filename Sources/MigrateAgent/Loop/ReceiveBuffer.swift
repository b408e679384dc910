/// The bytes read from one connection and not yet decoded: a flat buffer that
/// libuv reads straight into, so a page payload is handed to `UFFDIO_COPY`
/// where it landed, with no copy. A partial frame is moved to the front only
/// when the free tail gets too short for a whole frame.
/// Threading: owned by its connection, loop thread only.
struct ReceiveBuffer: ~Copyable {
    private var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    private var start = 0
    private var end = 0
    private var minimumTail: Int

    /// `maxFrame` is the largest frame the limits allow; the buffer holds two.
    init(maxFrame: Int) {
        capacity = max(2 * maxFrame, 256 * 1024)
        minimumTail = maxFrame
        base = .allocate(byteCount: capacity, alignment: 4096)
    }

    deinit { base.deallocate() }

    /// Where the next read should land.
    mutating func freeTail() -> UnsafeMutableRawBufferPointer {
        if capacity - end < minimumTail {
            if start < end { (base).copyMemory(from: base + start, byteCount: end - start) }
            end -= start
            start = 0
        }
        return UnsafeMutableRawBufferPointer(start: base + end, count: capacity - end)
    }

    mutating func didRead(_ count: Int) { end += count }

    /// The undecoded bytes.
    var pending: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + start, count: end - start) }

    /// Makes room for frames of up to `maxFrame` bytes, keeping the undecoded
    /// bytes; never shrinks. Moves the bytes, so a frame handler calls it only
    /// once it is done with its frame's payload.
    mutating func grow(maxFrame: Int) {
        let needed = max(2 * maxFrame, 256 * 1024)
        guard needed > capacity else { return }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: needed, alignment: 4096)
        bigger.copyMemory(from: base + start, byteCount: end - start)
        base.deallocate()
        base = bigger
        capacity = needed
        end -= start
        start = 0
        minimumTail = maxFrame
    }

    mutating func consume(_ count: Int) {
        start += count
        if start == end { start = 0; end = 0 }
    }
}
