import Glibc

/// Zero-filled arrays of plain values whose memory costs nothing until written:
/// `calloc` takes large blocks from fresh anonymous mappings, which the kernel
/// backs page by page on first write, so a per-page table that is written for
/// few pages (fault timestamps: demand faults only) stays out of the agent's
/// resident memory. Free with `ZeroedArray.free`.
enum ZeroedArray {
    static func allocate<T: BitwiseCopyable>(_: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        guard let raw = calloc(max(1, count), MemoryLayout<T>.stride) else {
            fatalError("calloc of \(count) × \(MemoryLayout<T>.stride) bytes failed")
        }
        return raw.bindMemory(to: T.self, capacity: max(1, count))
    }

    static func free<T>(_ pointer: UnsafeMutablePointer<T>) { Glibc.free(pointer) }
}
