// Little-endian loads and stores at arbitrary (possibly unaligned) byte offsets.
// Callers are responsible for bounds: every use sits behind a length check.

extension UnsafeRawPointer {
    /// Loads a little-endian integer at `offset` bytes, regardless of alignment.
    @inline(__always)
    func loadLE<T: FixedWidthInteger & BitwiseCopyable>(at offset: Int, as type: T.Type = T.self) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawPointer {
    /// Stores `value` little-endian at `offset` bytes, regardless of alignment.
    @inline(__always)
    func storeLE<T: FixedWidthInteger & BitwiseCopyable>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` in little-endian byte order.
    @inline(__always)
    mutating func appendLE<T: FixedWidthInteger & BitwiseCopyable>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// Appends `count` zero bytes.
    mutating func appendZeros(_ count: Int) {
        append(contentsOf: repeatElement(0, count: count))
    }
}
