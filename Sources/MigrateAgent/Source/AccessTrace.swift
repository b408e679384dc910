import Wire

/// The order in which a restore of one memory image first asked for its pages
/// on demand (`source --memory-file IMAGE --record-trace FILE`): each page
/// once, in the order of its first request. Loaded again with
/// `--prefetch-trace FILE`, its pages lead the background stream of the next
/// restore of the same image, so the pages a guest needs first are on their
/// way before it faults on them.
///
/// A trace is bound to its image: its page size, page count and content hash
/// (the `ArenaDigest` of the whole image, which both agents also compute for
/// the end-to-end check). A trace for another image is refused.
///
/// File format, version 1, every integer little-endian:
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 8 | magic, the bytes "MIGTRACE" |
/// | 8 | 4 | format version (1) |
/// | 12 | 4 | page size in bytes |
/// | 16 | 8 | page count of the image |
/// | 24 | 16 | content hash of the image (`ArenaDigest` value) |
/// | 40 | 8 | n: pages in the trace |
/// | 48 | 4·n | the page indices, `UInt32` each, in order of first request |
/// | 48 + 4·n | 16 | checksum: `PageHash` of every byte before it |
///
/// An empty trace is 64 bytes; a trace of every page of a 1 GiB image of
/// 4 KiB pages is 1 MiB.
///
/// A value type; `decode` and `encoded` do no I/O (`AccessTraceFile` does).
/// Threading: any thread.
public struct AccessTrace: Equatable, Sendable {
    /// What a trace is bound to.
    public struct Image: Equatable, Sendable, CustomStringConvertible {
        public var pageSize: Int
        public var pageCount: Int
        /// The `ArenaDigest` of every page of the image.
        public var contentHash: UInt128

        public init(pageSize: Int, pageCount: Int, contentHash: UInt128) {
            self.pageSize = pageSize
            self.pageCount = pageCount
            self.contentHash = contentHash
        }

        /// The image an arena holds: reads and hashes every page (about a
        /// second per few GiB; see README, "Access traces").
        public static func of(_ arena: Arena) -> Image {
            let digest = ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size), pageSize: arena.pageSize)
            return Image(pageSize: arena.pageSize, pageCount: arena.pageCount, contentHash: digest.value)
        }

        public var description: String {
            "\(pageCount) pages of \(pageSize) bytes with content hash \(hex(contentHash))"
        }
    }

    public static let magic: [UInt8] = Array("MIGTRACE".utf8)
    public static let formatVersion: UInt32 = 1
    static let headerSize = 48
    static let checksumSize = 16
    /// Indices are `UInt32`: a traced image has at most 2³² pages (16 TiB of 4 KiB pages).
    public static let maxPageCount = Int(UInt32.max) + 1

    public var image: Image
    /// Page indices in order of first request, each once, all below `image.pageCount`.
    public var pages: [Int]

    public init(image: Image, pages: [Int]) {
        self.image = image
        self.pages = pages
    }

    // MARK: Encoding

    /// The file's bytes. Writes what it holds without checking it (a test makes
    /// bad traces this way); the recorder only ever holds valid ones.
    public func encoded() -> [UInt8] {
        var bytes = Self.magic
        bytes.reserveCapacity(Self.headerSize + 4 * pages.count + Self.checksumSize)
        append(Self.formatVersion, to: &bytes)
        append(UInt32(truncatingIfNeeded: image.pageSize), to: &bytes)
        append(UInt64(image.pageCount), to: &bytes)
        append(UInt64(truncatingIfNeeded: image.contentHash), to: &bytes)
        append(UInt64(truncatingIfNeeded: image.contentHash >> 64), to: &bytes)
        append(UInt64(pages.count), to: &bytes)
        for page in pages { append(UInt32(truncatingIfNeeded: page), to: &bytes) }
        let checksum = bytes.withUnsafeBytes { PageHash.hash($0) }
        append(UInt64(truncatingIfNeeded: checksum), to: &bytes)
        append(UInt64(truncatingIfNeeded: checksum >> 64), to: &bytes)
        return bytes
    }

    private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    // MARK: Decoding

    /// Parses and checks a trace file's bytes: magic, version, length,
    /// checksum, then every index (in range, each once). `path` names the file
    /// in the error, which says what is wrong in one line.
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws(AgentError) -> AccessTrace {
        func refuse(_ reason: String) -> AgentError { .invalidArgument("the trace \(path) \(reason)") }
        guard bytes.count >= magic.count, bytes.prefix(magic.count).elementsEqual(magic) else {
            throw refuse("is not an access trace (it does not start with \"MIGTRACE\")")
        }
        guard bytes.count >= headerSize + checksumSize else {
            throw refuse("is truncated: \(bytes.count) bytes, less than the \(headerSize + checksumSize) of an empty trace")
        }
        func load<T: FixedWidthInteger>(_ offset: Int, as: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        let version = load(8, as: UInt32.self)
        guard version == formatVersion else {
            throw refuse("has format version \(version); this agent reads version \(formatVersion)")
        }
        let count = load(40, as: UInt64.self)
        let expected = count <= UInt64(maxPageCount) ? headerSize + 4 * Int(count) + checksumSize : nil
        guard let expected, expected == bytes.count else {
            if let expected, bytes.count < expected {
                throw refuse("is truncated: its header lists \(count) pages (\(expected) bytes), the file has \(bytes.count) bytes")
            }
            throw refuse("is corrupt: its header lists \(count) pages, the file has \(bytes.count) bytes")
        }
        let body = UnsafeRawBufferPointer(rebasing: bytes[..<(expected - checksumSize)])
        let checksum = UInt128(load(expected - 16, as: UInt64.self)) | UInt128(load(expected - 8, as: UInt64.self)) << 64
        guard PageHash.hash(body) == checksum else { throw refuse("is corrupt: its checksum does not match its contents") }
        let image = Image(pageSize: Int(load(12, as: UInt32.self)), pageCount: Int(clamping: load(16, as: UInt64.self)),
                          contentHash: UInt128(load(24, as: UInt64.self)) | UInt128(load(32, as: UInt64.self)) << 64)
        guard image.pageSize > 0, image.pageSize & (image.pageSize - 1) == 0,
              (1...maxPageCount).contains(image.pageCount) else {
            throw refuse("is corrupt: an image of \(image.pageCount) pages of \(image.pageSize) bytes cannot be traced")
        }
        var seen = [Bool](repeating: false, count: image.pageCount)
        var pages = [Int]()
        pages.reserveCapacity(Int(count))
        for i in 0..<Int(count) {
            let page = Int(load(headerSize + 4 * i, as: UInt32.self))
            guard page < image.pageCount else {
                throw refuse("names page \(page), outside its image of \(image.pageCount) pages")
            }
            guard !seen[page] else { throw refuse("lists page \(page) twice; a trace lists each page once") }
            seen[page] = true
            pages.append(page)
        }
        return AccessTrace(image: image, pages: pages)
    }

    // MARK: Matching an image

    /// Refuses the trace unless it was recorded for `arena`'s image: the page
    /// size and count first (no need to read the image when they differ), then
    /// the content hash. Returns the image (its hash is computed here), so a
    /// caller can reuse the hash. The error names both images and what differs.
    public func check(against arena: Arena, tracePath: String) throws(AgentError) -> Image {
        let what = "this image\(arena.imagePath.map { " (\($0))" } ?? "")"
        let recorded = "the trace \(tracePath) was recorded for an image of \(image)"
        guard arena.pageSize == image.pageSize, arena.pageCount == image.pageCount else {
            let differs = arena.pageSize != image.pageSize ? "the page size differs" : "the size differs"
            throw .invalidArgument("\(recorded); \(what) has \(arena.pageCount) pages of \(arena.pageSize) bytes: \(differs)")
        }
        let actual = Image.of(arena)
        guard actual.contentHash == image.contentHash else {
            throw .invalidArgument("\(recorded); \(what) has \(actual): same size, the contents differ")
        }
        return actual
    }
}
