import Foundation
import MigrateAgent
import MigrateBench
import Testing
import Wire

/// `source --memory-file`: an existing image served read-only by pure
/// post-copy, to a destination that only receives it (`--no-guest`).
@Suite("a memory image as the source", .serialized)
struct MemoryFileTests {
    /// An image of `pages` pages, the bench's kind (pseudo-random bytes, every eighth
    /// page all zero), a new seed each time; returns its bytes.
    static func makeImage(pages: Int, at path: String) throws -> [UInt8] {
        try MemoryImage.write(path: path, bytes: pages * MemoryImage.pageSize, seed: UInt64.random(in: 1...UInt64.max))
        return try #require(FileManager.default.contents(atPath: path).map { [UInt8]($0) }, "cannot read back \(path)")
    }

    @Test("the destination receives exactly the image")
    func servesTheImage() throws {
        let scratch = AgentHarness.scratchDirectory()
        let image = scratch.appendingPathComponent("memory.img").path
        let bytes = try Self.makeImage(pages: 4096, at: image)
        let expected = bytes.withUnsafeBytes { ArenaDigest.of(arena: $0, pageSize: 4096).value }
        let report = scratch.appendingPathComponent("d.json").path
        let (source, address) = try AgentHarness.startSource(arena: nil, extra: ["--memory-file", image])
        defer { source.terminate() }
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "16MiB", "--no-guest", "--report-json", report,
        ])
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "\(source.capturedOutput)")
        let r = try #require(ReportFormatting.read(DestinationReport.self, fromFile: report))
        #expect(r.digestMatch)
        let hex = String(expected, radix: 16)
        #expect(r.destinationDigest == String(repeating: "0", count: 32 - hex.count) + hex, "the digest of the image file itself")
        #expect(r.guest == nil, "no guest ran")
        #expect(r.zeroPagesReceived == 4096 / 8, "every eighth page is all zero and came without its bytes")
    }

    @Test("unreadable, empty and misaligned images are refused by name", arguments: [
        ("missing", -1, "cannot open the memory file"),
        ("empty", 0, "it is empty"),
        ("misaligned", 4097, "not a whole number of 4096-byte pages"),
    ])
    func badImages(name: String, size: Int, expected: String) throws {
        let path = AgentHarness.scratchDirectory().appendingPathComponent(name).path
        if size >= 0 { #expect(FileManager.default.createFile(atPath: path, contents: Data(count: size))) }
        let source = try AgentHarness.start(["source", "--listen", "127.0.0.1:0", "--memory-file", path])
        #expect(source.wait(seconds: 30) == 1)
        #expect(source.capturedOutput.contains(expected) && source.capturedOutput.contains(path), "\(source.capturedOutput)")
    }

    @Test("an image with pre-copy or an arena size is refused")
    func imageOptionMistakes() throws {
        let path = AgentHarness.scratchDirectory().appendingPathComponent("img").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 8192)))
        let precopy = try AgentHarness.start(["source", "--listen", "127.0.0.1:0", "--memory-file", path, "--precopy-rounds", "1"])
        #expect(precopy.wait(seconds: 30) == 1)
        #expect(precopy.capturedOutput.contains("pure post-copy"), "\(precopy.capturedOutput)")
        let both = try AgentHarness.start(["source", "--listen", "127.0.0.1:0", "--memory-file", path, "--arena", "8KiB"])
        #expect(both.wait(seconds: 30) != 0)
        #expect(both.capturedOutput.contains("exclude each other"), "\(both.capturedOutput)")
    }
}
