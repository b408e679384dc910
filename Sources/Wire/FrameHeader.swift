/// The fixed 24-byte header that starts every frame (all fields little-endian):
///
/// | offset | size | field                                                 |
/// |-------:|-----:|-------------------------------------------------------|
/// |      0 |    4 | magic `0x414D_4350` ("PCMA")                          |
/// |      4 |    1 | version                                               |
/// |      5 |    1 | kind (`FrameKind`)                                    |
/// |      6 |    2 | flags                                                 |
/// |      8 |    4 | length: payload bytes after the header                |
/// |     12 |    4 | count: pages for page-run frames, else 0              |
/// |     16 |    8 | arg: first page for page-run frames, else kind-defined |
public struct FrameHeader: Equatable, Sendable {
    public var version: UInt8
    public var kind: FrameKind
    public var flags: UInt16
    public var length: UInt32
    public var count: UInt32
    public var arg: UInt64

    public init(
        kind: FrameKind, flags: UInt16 = 0, length: UInt32 = 0, count: UInt32 = 0, arg: UInt64 = 0,
        version: UInt8 = WireConstants.protocolVersion
    ) {
        self.version = version
        self.kind = kind
        self.flags = flags
        self.length = length
        self.count = count
        self.arg = arg
    }

    /// Header plus payload: the bytes this frame occupies on the wire.
    public var frameSize: Int { WireConstants.headerSize + Int(length) }

    /// Writes this header (with its own `version`) as exactly 24 bytes at `buffer`.
    public func encode(into buffer: UnsafeMutableRawPointer) {
        Self.encode(kind: kind, flags: flags, length: length, count: count, arg: arg, into: buffer)
        buffer.storeBytes(of: version, toByteOffset: 4, as: UInt8.self)
    }

    /// Writes a current-version header as exactly 24 bytes at `buffer`.
    /// No allocation and no alignment requirement: meant for the page-sending hot path,
    /// where the header goes into a small buffer sent in front of the page bytes.
    @inlinable
    public static func encode(
        kind: FrameKind, flags: UInt16 = 0, length: UInt32, count: UInt32 = 0, arg: UInt64 = 0,
        into buffer: UnsafeMutableRawPointer
    ) {
        buffer.storeBytes(of: WireConstants.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: WireConstants.protocolVersion, toByteOffset: 4, as: UInt8.self)
        buffer.storeBytes(of: kind.rawValue, toByteOffset: 5, as: UInt8.self)
        buffer.storeBytes(of: flags.littleEndian, toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        buffer.storeBytes(of: count.littleEndian, toByteOffset: 12, as: UInt32.self)
        buffer.storeBytes(of: arg.littleEndian, toByteOffset: 16, as: UInt64.self)
    }

    /// The 24 encoded bytes, appended to `bytes`.
    func append(to bytes: inout [UInt8]) {
        withUnsafeTemporaryAllocation(byteCount: WireConstants.headerSize, alignment: 8) { raw in
            encode(into: raw.baseAddress!)
            bytes.append(contentsOf: UnsafeRawBufferPointer(raw))
        }
    }
}
