import MigrateAgent
import Testing

@Suite("ByteSize parsing")
struct ByteSizeTests {
    static let sizes: [(String, Int)] = [
        ("4096", 4096), ("0", 0), ("7b", 7), ("7B", 7),
        ("64KiB", 64 << 10), ("64k", 64 << 10), ("64KB", 64 << 10), ("64kib", 64 << 10),
        ("256MiB", 256 << 20), ("256M", 256 << 20), ("256mb", 256 << 20),
        ("1GiB", 1 << 30), ("1g", 1 << 30), ("2GB", 2 << 30),
        ("  16KiB  ", 16 << 10),
    ]

    @Test("units are powers of 1024, case-insensitive", arguments: sizes)
    func units(text: String, bytes: Int) throws {
        #expect(try ByteSize(parsing: text).bytes == bytes)
    }

    @Test("bad text is an invalid argument naming the text", arguments: [
        "", "   ", "abc", "MiB", "12XB", "12 TiB", "-5", "+5", "1.5GiB", "0x1000", "64 KiB extra", "1e9",
    ])
    func badText(text: String) {
        let message = invalidArgumentMessage { _ = try ByteSize(parsing: text) }
        #expect(message?.contains("invalid size '\(text)'") == true, "\(message ?? "nil")")
    }

    @Test("a size that overflows is rejected, not wrapped")
    func overflow() {
        let tooLarge = invalidArgumentMessage { _ = try ByteSize(parsing: "99999999999GiB") }
        #expect(tooLarge?.contains("too large") == true, "\(tooLarge ?? "nil")")
        // More digits than an Int holds.
        #expect(invalidArgumentMessage { _ = try ByteSize(parsing: "99999999999999999999999") } != nil)
    }

    @Test("pages(of:) divides a whole number of pages")
    func wholePages() throws {
        #expect(try ByteSize(parsing: "64KiB").pages(of: 4096) == 16)
        #expect(try ByteSize(parsing: "1GiB").pages(of: 4096) == 262_144)
        #expect(try ByteSize(parsing: "4096").pages(of: 4096) == 1)
        #expect(try ByteSize(parsing: "2MiB").pages(of: 2 << 20) == 1)
    }

    @Test("pages(of:) rejects a size that is not a whole number of pages")
    func partialPage() {
        for text in ["6000", "4097", "2KiB"] {
            let message = invalidArgumentMessage { _ = try ByteSize(parsing: text).pages(of: 4096) }
            #expect(message?.contains("not a whole number of 4096-byte pages") == true, "\(text): \(message ?? "nil")")
        }
    }

    @Test("pages(of:) rejects zero")
    func zero() {
        let message = invalidArgumentMessage { _ = try ByteSize(parsing: "0").pages(of: 4096) }
        #expect(message?.contains("larger than zero") == true, "\(message ?? "nil")")
        #expect(invalidArgumentMessage { _ = try ByteSize(parsing: "0MiB").pages(of: 4096) } != nil)
    }

    @Test("description names the largest whole unit")
    func description() {
        #expect(ByteSize(bytes: 1 << 30).description == "1 GiB")
        #expect(ByteSize(bytes: 256 << 20).description == "256 MiB")
        #expect(ByteSize(bytes: 4096).description == "4 KiB")
        #expect(ByteSize(bytes: 1536 << 10).description == "1536 KiB")
        #expect(ByteSize(bytes: 1000).description == "1000 bytes")
    }

    @Test("sizes without a space round-trip through parsing")
    func roundTrip() throws {
        for bytes in [4096, 64 << 10, 256 << 20, 3 << 30] {
            let text = ByteSize(bytes: bytes).description.replacingOccurrences(of: " ", with: "")
            #expect(try ByteSize(parsing: text).bytes == bytes, "\(text)")
        }
    }
}

private extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
