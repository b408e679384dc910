import MigrateAgent
import MigrateDemo
import Testing

/// The agents load no Foundation: linking it maps libFoundation, ICU and the
/// internationalization library into every agent process, ~3.3 MiB of PSS
/// each (BENCHMARKS.md). An `import Foundation` in any module the binary
/// links brings them back; this catches it.
@Suite("what the agent binary links")
struct LinkageTests {
    @Test("migrate-agent needs FoundationEssentials at most, not Foundation or ICU")
    func noFoundation() throws {
        let ldd = try AgentProcess(executable: "/usr/bin/ldd", arguments: [AgentHarness.binary], captureStderr: true)
        #expect(ldd.wait(seconds: 30) == 0, "\(ldd.capturedOutput)")
        let libraries = ldd.capturedOutput.split(separator: "\n").compactMap { $0.trimmed.split(separator: " ").first.map(String.init) }
        #expect(libraries.contains { $0.hasPrefix("libuv") }, "ldd lists the shared libraries: \(ldd.capturedOutput)")
        for unwanted in ["libFoundation.so", "lib_FoundationICU.so", "libFoundationInternationalization.so"] {
            #expect(!libraries.contains(unwanted), "\(unwanted) is linked: \(ldd.capturedOutput)")
        }
    }
}
