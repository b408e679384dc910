import CLibUV
import Wire

/// Frames queued for one connection: headers (and small owned payloads) live in
/// a byte slab, large payloads (pages) are referenced where they already are,
/// so a page goes from the arena to the socket with no copy. One `uv_write` is
/// in flight at a time; frames queued meanwhile wait in the other slab.
///
/// Once `startSealing` ran (an encrypted connection), frames are instead
/// copied into a staging buffer of `SealedRecord.maxPlaintext` bytes that
/// the connection owns; each time it fills, and at every flush, its bytes are
/// sealed as one record into the slab. Frames queued before the switch go out
/// as they were. Without encryption nothing of this runs.
///
/// Threading: owned by its connection, loop thread only. Allocates only when a
/// slab or the segment list outgrows what it had (and, encrypted, once per
/// record inside swift-crypto: see `RecordSealer`).
final class FrameWriter {
    private enum Segment {
        case slab(offset: Int, count: Int)
        case external(UnsafeRawPointer, count: Int)
    }

    private struct Slab {
        var base: UnsafeMutableRawPointer
        var capacity: Int
        var used = 0
        var segments: [Segment] = []
        var bytes = 0

        init(capacity: Int) {
            self.capacity = capacity
            base = .allocate(byteCount: capacity, alignment: 16)
            segments.reserveCapacity(1024)
        }

        mutating func reserve(_ count: Int) -> UnsafeMutableRawPointer {
            if used + count > capacity {
                let grown = UnsafeMutableRawPointer.allocate(byteCount: max(capacity * 2, used + count), alignment: 16)
                grown.copyMemory(from: base, byteCount: used)
                base.deallocate()
                base = grown
                capacity = max(capacity * 2, used + count)
            }
            defer { used += count }
            return base + used
        }

        mutating func reset() {
            used = 0
            bytes = 0
            segments.removeAll(keepingCapacity: true)
        }
    }

    private var queued = Slab(capacity: 64 * 1024)
    private var inFlight = Slab(capacity: 64 * 1024)
    private var writing = false
    private let request: UnsafeMutablePointer<uv_write_t> = .allocate(capacity: 1)
    private var scratch: UnsafeMutablePointer<uv_buf_t>
    private var scratchCapacity = 1024

    private var sealer: RecordSealer?
    private var staging: UnsafeMutableRawPointer?
    private var staged = 0

    init() { scratch = .allocate(capacity: scratchCapacity) }

    deinit {
        staging?.deallocate()
        queued.base.deallocate()
        inFlight.base.deallocate()
        request.deallocate()
        scratch.deallocate()
    }

    /// Bytes queued or being written: the backpressure signal for the bulk stream.
    var backlog: Int { queued.bytes + inFlight.bytes + staged }

    /// Every frame queued from now on is sealed with `sealer`.
    func startSealing(_ sealer: RecordSealer) {
        precondition(self.sealer == nil, "a connection starts sealing once")
        self.sealer = sealer
        staging = .allocate(byteCount: SealedRecord.maxPlaintext, alignment: 16)
    }

    /// Queues a frame header, then `payload` by reference (it must stay valid until written).
    func enqueue(kind: FrameKind, flags: UInt16 = 0, count: UInt32 = 0, arg: UInt64 = 0,
                 payload: UnsafeRawBufferPointer? = nil) {
        let length = payload?.count ?? 0
        if sealer != nil {
            withUnsafeTemporaryAllocation(byteCount: WireConstants.headerSize, alignment: 8) { header in
                FrameHeader.encode(kind: kind, flags: flags, length: UInt32(length), count: count, arg: arg,
                                   into: header.baseAddress!)
                stage(UnsafeRawBufferPointer(header))
            }
            if let payload { stage(payload) }
            return
        }
        let offset = queued.used
        FrameHeader.encode(kind: kind, flags: flags, length: UInt32(length), count: count, arg: arg,
                           into: queued.reserve(WireConstants.headerSize))
        append(.slab(offset: offset, count: WireConstants.headerSize))
        if let payload, payload.count > 0 {
            append(.external(payload.baseAddress!, count: payload.count))
        }
    }

    /// Queues an already encoded frame by copying it (control frames).
    func enqueue(encoded bytes: [UInt8]) {
        if sealer != nil { return bytes.withUnsafeBytes { stage($0) } }
        let offset = queued.used
        bytes.withUnsafeBytes { queued.reserve(bytes.count).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        append(.slab(offset: offset, count: bytes.count))
    }

    /// Copies `bytes` into the staging buffer, sealing it into the slab each time it fills.
    private func stage(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        while !rest.isEmpty {
            let n = min(rest.count, SealedRecord.maxPlaintext - staged)
            (staging! + staged).copyMemory(from: rest.baseAddress!, byteCount: n)
            staged += n
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            if staged == SealedRecord.maxPlaintext { sealStaged() }
        }
    }

    /// Seals what is staged as one record at the end of the queued slab.
    private func sealStaged() {
        guard staged > 0, let sealer else { return }
        let offset = queued.used
        let out = queued.reserve(staged + SealedRecord.overhead)
        let size = sealer.seal(UnsafeRawBufferPointer(start: staging, count: staged), into: out)
        append(.slab(offset: offset, count: size))
        staged = 0
    }

    private func append(_ segment: Segment) {
        switch (queued.segments.last, segment) {
        case (.slab(let o, let c)?, .slab(let o2, let c2)) where o + c == o2:
            queued.segments[queued.segments.count - 1] = .slab(offset: o, count: c + c2)  // merge adjacent slab bytes
        default:
            queued.segments.append(segment)
        }
        switch segment {
        case .slab(_, let c), .external(_, let c): queued.bytes += c
        }
    }

    /// Writes what is queued: first `uv_try_write` (usually all of it, no
    /// callback), the rest with one `uv_write`. Returns a libuv error, or 0.
    func flush(_ stream: UnsafeMutablePointer<uv_stream_t>, owner: UnsafeMutableRawPointer, done: uv_write_cb) -> Int32 {
        guard !writing else { return 0 }
        sealStaged()
        guard !queued.segments.isEmpty else { return 0 }
        if queued.segments.count > scratchCapacity {
            scratch.deallocate()
            scratchCapacity = queued.segments.count * 2
            scratch = .allocate(capacity: scratchCapacity)
        }
        var n = 0
        for segment in queued.segments {
            switch segment {
            case .slab(let offset, let count):
                scratch[n] = uv_buf_init((queued.base + offset).assumingMemoryBound(to: CChar.self), UInt32(count))
            case .external(let pointer, let count):
                scratch[n] = uv_buf_init(UnsafeMutablePointer(mutating: pointer.assumingMemoryBound(to: CChar.self)), UInt32(count))
            }
            n += 1
        }
        var first = 0
        let written = uv_try_write(stream, scratch, UInt32(n))
        if written == Int32(UV_EAGAIN.rawValue) || written == Int32(UV_ENOSYS.rawValue) {
            // Nothing went out: all of it goes through uv_write.
        } else if written < 0 {
            return written
        } else {
            var left = Int(written)
            while first < n, left >= scratch[first].len {
                left -= scratch[first].len
                first += 1
            }
            if first == n { queued.reset(); return 0 }
            scratch[first].base += left
            scratch[first].len -= left
        }
        swap(&queued, &inFlight)
        writing = true
        request.pointee.data = owner
        return uv_write(request, stream, scratch + first, UInt32(n - first), done)
    }

    /// Called from the write callback: frees the written slab.
    func writeCompleted() {
        writing = false
        inFlight.reset()
    }
}
