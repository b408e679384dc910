import Foundation
import Glibc
import MigrateAgent
import MigrateDemo
import Testing

/// What the commands refuse before a migration starts (report paths, arenas
/// larger than the machine, numeric options out of range), and a report that
/// cannot be written at the end of a migration that succeeded.
@Suite("command checks before and after a migration", .serialized)
struct CommandChecksTests {
    /// More than this machine's memory, in whole GiB.
    static var tooLarge: String {
        let total = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("MemTotal:") }?
            .split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? (64 << 20)
        return "\((total >> 20) * 2 + 2)GiB"
    }

    @Test("a report into a missing directory is refused before the migration, with the path named", arguments: [
        ["source", "--listen", "127.0.0.1:0", "--arena", "4MiB"],
        ["destination", "--connect", "127.0.0.1:1", "--arena", "4MiB"],
    ])
    func reportDirectoryMissing(arguments: [String]) throws {
        let path = "/nonexistent-\(UUID().uuidString)/report.json"
        let agent = try AgentHarness.start(arguments + ["--report-json", path])
        defer { agent.terminate() }
        let exit = agent.wait(seconds: 30)
        let output = agent.capturedOutput
        #expect(exit == 1, "\(output)")
        let errors = output.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(errors.count == 1 && errors[0].contains(path) && errors[0].contains("does not exist"), "\(output)")
        #expect(!output.contains("listening on") && !output.contains("filling") && !output.contains("cannot connect"),
                "refused before anything started: \(output)")
    }

    @Test("a report that cannot be written at the end goes to stdout; the migration that succeeded exits 0")
    func reportUnwritableAtTheEnd() throws {
        let sourceDirectory = AgentHarness.scratchDirectory()
        let destinationDirectory = AgentHarness.scratchDirectory()
        let (source, address) = try AgentHarness.startSource(
            arena: "32MiB", extra: ["--report-json", sourceDirectory.appendingPathComponent("s.json").path])
        defer { source.terminate() }
        // The source checked its path and listens: its directory goes now, before any page moved.
        try FileManager.default.removeItem(at: sourceDirectory)
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "32MiB", "--json",
            "--report-json", destinationDirectory.appendingPathComponent("d.json").path,
        ])
        defer { destination.terminate() }
        // The destination prints "connecting" after its check, before it connects.
        #expect(destination.awaitLine(containing: "connecting to", seconds: 60) != nil, "\(destination.capturedOutput)")
        try FileManager.default.removeItem(at: destinationDirectory)
        let destinationExit = destination.wait(seconds: 120)
        let sourceExit = source.wait(seconds: 30)
        for (agent, exit) in [(destination, destinationExit), (source, sourceExit)] {
            let output = agent.capturedOutput
            #expect(exit == 0, "a migration that succeeded exits 0 even without its report file: \(output)")
            #expect(output.contains("warning: cannot write the report to") && output.contains("on stdout as JSON"), "\(output)")
            #expect(!output.contains("error:"), "\(output)")
            #expect(output.contains("\"succeeded\" : true"), "the report is on stdout as JSON: \(output)")
        }
        #expect(destination.capturedOutput.contains("\"digestMatch\" : true"))
    }

    @Test("an arena larger than the machine is refused before anything is allocated, both sizes named", arguments: [
        ["source", "--listen", "127.0.0.1:0"],
        ["destination", "--connect", "127.0.0.1:1"],
        ["demo"],
    ])
    func arenaTooLarge(arguments: [String]) throws {
        let size = Self.tooLarge
        let agent = try AgentHarness.start(arguments + ["--arena", size])
        defer { agent.terminate() }
        let exit = agent.wait(seconds: 30)
        let output = agent.capturedOutput
        #expect(exit == 1, "\(output)")
        let gib = size.dropLast(3)
        #expect(output.contains("error:") && output.contains("\(gib) GiB") && output.contains("cannot fit")
                && output.contains("MemAvailable") && output.contains("is left"), "\(output)")
        #expect(!output.contains("filling") && !output.contains("cannot connect") && !output.contains("listening on"), "\(output)")
        if arguments == ["demo"] { #expect(output.contains("2 arenas"), "\(output)") }
    }

    @Test("numeric options out of range are refused with the option and its range named", arguments: [
        (["source", "--dirty-rate", "9223372036854775807"], "--dirty-rate must be from 0 to 1000000"),
        (["source", "--peer-timeout", "inf"], "--peer-timeout must be a number of seconds from 0.1 to 86400"),
        (["source", "--max-bandwidth", "100KiB"], "--max-bandwidth must be at least 1 MiB a second, not 100KiB"),
        (["bench", "--link-pacing", "101"], "--link-pacing must be from 0 to 100, not 101"),
        (["source", "--peer-timeout", "1e-9"], "--peer-timeout must be a number of seconds"),
        (["source", "--peer-timeout", "nan"], "--peer-timeout must be a number of seconds"),
        (["source", "--busy-poll", "9223372036854775807"], "--busy-poll must be from 0 to 1000000"),
        (["source", "--precopy-rounds", "9223372036854775807"], "--precopy-rounds must be from 0 to 100"),
        (["source", "--converge-pages=-1"], "--converge-pages must be from 0"),
        (["source", "--guest-threads", "100000"], "--guest-threads must be from 1 to 256"),
        (["destination", "--connect", "127.0.0.1:1", "--peer-timeout", "inf"], "--peer-timeout must be a number of seconds"),
        (["destination", "--connect", "127.0.0.1:1", "--busy-poll=-1"], "--busy-poll must be from 0"),
        (["source", "--loop-slice", "99"], "--loop-slice must be from 100 to 100000"),
        (["destination", "--connect", "127.0.0.1:1", "--loop-slice", "100001"], "--loop-slice must be from 100 to 100000"),
        (["destination", "--connect", "127.0.0.1:1", "--write-ratio", "nan"], "--write-ratio must be between 0 and 1"),
        (["demo", "--timeout", "0"], "--timeout must be a number of seconds from 1.0 to 86400"),
        (["demo", "--timeout", "inf"], "--timeout must be a number of seconds"),
        (["demo", "--guest-threads=-1"], "--guest-threads must be from 0 to 256"),
        (["demo", "--dirty-rate", "9223372036854775807"], "--dirty-rate must be from 0 to 1000000"),
        (["demo", "--precopy-rounds", "1000"], "--precopy-rounds must be from 0 to 100"),
        (["demo", "--write-ratio", "2"], "--write-ratio must be between 0 and 1"),
        (["selftest", "--timeout", "inf"], "--timeout must be a number of seconds"),
        (["bench", "--run-timeout", "0"], "--run-timeout must be a number of seconds"),
        (["bench", "--repetitions", "0"], "--repetitions must be from 1"),
        (["bench", "--baseline-samples", "9223372036854775807"], "--baseline-samples must be from 100 to 10000000"),
        (["bench", "--busy-poll=-5"], "--busy-poll must be from 0"),
        (["bench", "--loop-slice", "0"], "--loop-slice must be from 100"),
        (["bench", "--bandwidth", "0", "--scenarios", "none"], "--bandwidth must be larger than zero"),
    ])
    func numericOptions(arguments: [String], expected: String) throws {
        let process = try AgentHarness.start(arguments)
        defer { process.terminate() }
        let exit = process.wait(seconds: 30)
        #expect(exit != nil && exit != 0, "\(process.capturedOutput)")
        #expect(process.capturedOutput.contains(expected), "\(process.capturedOutput)")
    }

    @Test("the bounds themselves are accepted")
    func boundsAccepted() throws {
        let (source, _) = try AgentHarness.startSource(arena: "4MiB", extra: [
            "--dirty-rate", "1000000", "--peer-timeout", "0.1", "--busy-poll", "1000000", "--precopy-rounds", "100",
            "--guest-threads", "256", "--loop-slice", "100",
        ])
        source.terminate()
        #expect(source.wait(seconds: 30) != nil)
    }
}
