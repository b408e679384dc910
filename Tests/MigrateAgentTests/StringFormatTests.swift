import FoundationEssentials
import MigrateAgent
import Testing

/// What stands in for Foundation's formatting in the agents (they load only
/// FoundationEssentials): `printf` formats, trimming, a file error's reason.
struct StringFormatTests {
    @Test func formatsAsPrintf() {
        #expect(String(format: "%.1f µs, %5.2f, %d pages, %llu", 12.345, 3.14159, 42, UInt64(1) << 40)
            == "12.3 µs,  3.14, 42 pages, 1099511627776")
        #expect(String(format: "%.0f%%", 99.6) == "100%")
        let long = String(format: "%0200d", 7)  // longer than the first buffer
        #expect(long.count == 200 && long.hasSuffix("07") && long.hasPrefix("000"))
    }

    @Test func trimsSpacesTabsAndLineBreaks() {
        #expect(" \t 512 MiB\n".trimmed == "512 MiB")
        #expect("\n \n".trimmed == "")
        #expect("x".trimmed == "x")
    }

    @Test func aFileErrorGivesTheSystemsReason() {
        do {
            try FileManager.default.createDirectory(atPath: "/proc/no-such-dir/x", withIntermediateDirectories: true)
            Issue.record("creating a directory under /proc/no-such-dir succeeded")
        } catch {
            #expect(error.reasonText == "No such file or directory", "\(error)")
        }
    }
}
