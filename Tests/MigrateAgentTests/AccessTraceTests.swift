import Foundation
import MigrateAgent
import Testing
import Wire

/// The access-trace file format: a round trip, and every reason a trace is refused.
@Suite("access trace files")
struct AccessTraceTests {
    static let image = AccessTrace.Image(pageSize: 4096, pageCount: 64, contentHash: 0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210)

    static func scratch(_ name: String) -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("access-trace-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent(name).path
    }

    /// Decodes `bytes`, expecting a refusal; returns its message.
    static func refusal(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        invalidArgumentMessage({ _ = try bytes.withUnsafeBytes { try AccessTrace.decode($0, path: "T") } },
                               sourceLocation: sourceLocation)
    }

    /// Rewrites the trailing checksum after a test edited the bytes before it.
    static func resealed(_ bytes: [UInt8]) -> [UInt8] {
        var body = Array(bytes.dropLast(16))
        let checksum = body.withUnsafeBytes { PageHash.hash($0) }
        withUnsafeBytes(of: checksum.littleEndian) { body.append(contentsOf: $0) }
        return body
    }

    @Test("a trace survives a round trip through a file, and its size is 64 + 4 bytes a page")
    func roundTrip() throws {
        let path = Self.scratch("t.trace")
        let trace = AccessTrace(image: Self.image, pages: [5, 0, 63, 17, 2])
        try AccessTraceFile.write(trace, to: path)
        #expect(try AccessTraceFile.read(path) == trace)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == 64 + 4 * 5)
        let empty = AccessTrace(image: Self.image, pages: [])
        try AccessTraceFile.write(empty, to: path)  // replaces the first, atomically
        #expect(try AccessTraceFile.read(path) == empty)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        #expect(leftovers == ["t.trace"], "no temporary file is left behind")
    }

    @Test("the header is what the format says: magic, version, geometry, hash, count, little-endian indices")
    func layout() {
        let bytes = AccessTrace(image: Self.image, pages: [0x0102_0304]).encoded()
        #expect(Array(bytes[0..<8]) == Array("MIGTRACE".utf8))
        #expect(Array(bytes[8..<12]) == [1, 0, 0, 0])
        #expect(Array(bytes[12..<16]) == [0, 0x10, 0, 0])
        #expect(Array(bytes[16..<24]) == [64, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[24..<28]) == [0x10, 0x32, 0x54, 0x76])
        #expect(Array(bytes[40..<48]) == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[48..<52]) == [4, 3, 2, 1])
        #expect(bytes.count == 68)
    }

    @Test("a file that is not a trace, a later version, a truncated or corrupt file, a bad index: each refused by reason")
    func refusals() throws {
        let good = AccessTrace(image: Self.image, pages: [3, 1, 4]).encoded()
        #expect(Self.refusal(Array("hello, world".utf8))?.contains("is not an access trace") == true)
        #expect(Self.refusal([])?.contains("is not an access trace") == true)
        #expect(Self.refusal(Array(good.prefix(30)))?.contains("is truncated: 30 bytes") == true)
        #expect(Self.refusal(Array(good.dropLast(4))) == "the trace T is truncated: its header lists 3 pages (76 bytes), the file has 72 bytes")
        #expect(Self.refusal(good + [0])?.contains("is corrupt: its header lists 3 pages, the file has 77 bytes") == true)
        var version = good
        version[8] = 2
        #expect(Self.refusal(Self.resealed(version)) == "the trace T has format version 2; this agent reads version 1")
        var flipped = good
        flipped[49] ^= 0x40  // an index byte: the checksum no longer matches
        #expect(Self.refusal(flipped) == "the trace T is corrupt: its checksum does not match its contents")
        let outside = AccessTrace(image: Self.image, pages: [3, 64]).encoded()
        #expect(Self.refusal(outside) == "the trace T names page 64, outside its image of 64 pages")
        let twice = AccessTrace(image: Self.image, pages: [3, 9, 3]).encoded()
        #expect(Self.refusal(twice) == "the trace T lists page 3 twice; a trace lists each page once")
        let badGeometry = AccessTrace(image: .init(pageSize: 3000, pageCount: 64, contentHash: 1), pages: []).encoded()
        #expect(Self.refusal(badGeometry)?.contains("cannot be traced") == true)
    }

    @Test("missing files and directories are refused with the path")
    func unreadable() {
        let missing = Self.scratch("absent.trace")
        #expect(invalidArgumentMessage { _ = try AccessTraceFile.read(missing) }?.hasPrefix("cannot open the trace \(missing)") == true)
        let directory = (missing as NSString).deletingLastPathComponent
        #expect(invalidArgumentMessage { _ = try AccessTraceFile.read(directory) }?.contains("is not a regular file") == true)
    }

    @Test("a trace matches only its own image: page count, page size and contents are each named when they differ")
    func matchesItsImage() throws {
        let imagePath = Self.scratch("image")
        var bytes = [UInt8](repeating: 0, count: 16 * 4096)
        for i in stride(from: 0, to: bytes.count, by: 97) { bytes[i] = UInt8(truncatingIfNeeded: i / 97) }
        #expect(FileManager.default.createFile(atPath: imagePath, contents: Data(bytes)))
        let arena = try Arena(imageAt: imagePath, pageSize: 4096)
        let image = AccessTrace.Image.of(arena)
        #expect(image.pageCount == 16 && image.pageSize == 4096)
        #expect(image.contentHash == bytes.withUnsafeBytes { ArenaDigest.of(arena: $0, pageSize: 4096).value })
        #expect(try AccessTrace(image: image, pages: [2, 1]).check(against: arena, tracePath: "T") == image)

        var other = image
        other.pageCount = 65536
        let size = invalidArgumentMessage { _ = try AccessTrace(image: other, pages: []).check(against: arena, tracePath: "T") }
        #expect(size?.hasPrefix("the trace T was recorded for an image of 65536 pages of 4096 bytes with content hash ") == true)
        #expect(size?.hasSuffix("; this image (\(imagePath)) has 16 pages of 4096 bytes: the size differs") == true)

        other = image
        other.pageSize = 8192
        other.pageCount = 8
        let pageSize = invalidArgumentMessage { _ = try AccessTrace(image: other, pages: []).check(against: arena, tracePath: "T") }
        #expect(pageSize?.hasSuffix("the page size differs") == true)

        other = image
        other.contentHash ^= 1
        let contents = invalidArgumentMessage { _ = try AccessTrace(image: other, pages: []).check(against: arena, tracePath: "T") }
        #expect(contents?.contains("this image (\(imagePath)) has \(image)") == true)
        #expect(contents?.hasSuffix("same size, the contents differ") == true)
    }
}
