import Foundation
import MigrateAgent
import MigrateDemo
import Testing

/// Runs the real `migrate-agent` binary (built next to this test bundle) as
/// source and destination processes on 127.0.0.1. Every wait has a deadline;
/// on a deadline the process is killed and the test fails instead of hanging.
enum AgentHarness {
    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("migrate-agent").path
    }

    /// A fresh directory for one test's report files.
    static func scratchDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-it-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// One pre-shared key for every agent this test process starts (made on first use).
    static let keyFile: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-agent-it-\(getpid()).key").path
        try? FileManager.default.removeItem(atPath: path)
        do { try PresharedKey.generate(path: path) } catch { fatalError("cannot make the test key: \(error)") }
        return path
    }()

    /// Starts the binary. Source and destination get the test key unless the
    /// arguments name a key (or `--insecure`) themselves.
    static func start(_ arguments: [String]) throws -> AgentProcess {
        var arguments = arguments
        if ["source", "destination"].contains(arguments.first ?? ""),
           !arguments.contains("--psk-file"), !arguments.contains("--insecure") {
            arguments += ["--psk-file", keyFile]
        }
        return try startBare(arguments)
    }

    /// Starts `executable` (the agent binary by default) with exactly `arguments` (no test key added).
    static func startBare(_ arguments: [String], executable: String = binary) throws -> AgentProcess {
        try AgentProcess(executable: executable, arguments: arguments, captureStderr: true)
    }

    /// Starts a source on a free port; returns it and its address, or fails the test.
    /// `arena` nil: no `--arena` (a `--memory-file` in `extra` sets the size).
    static func startSource(arena: String?, extra: [String] = []) throws -> (AgentProcess, String) {
        let source = try start(["source", "--listen", "127.0.0.1:0"] + (arena.map { ["--arena", $0] } ?? []) + extra)
        guard let address = source.awaitLine(prefix: "listening on ", seconds: 60) else {
            source.terminate()
            Issue.record("the source never listened; output:\n\(source.capturedOutput)")
            throw HarnessError.notListening
        }
        return (source, address)
    }

    /// A pair still migrating for a while: demand only (no background stream), one
    /// sequential guest thread; returned once the destination's guest runs.
    static func startSlowMigration(sourceExtra: [String] = [], destinationExtra: [String] = []) throws -> (source: AgentProcess, destination: AgentProcess) {
        let (source, address) = try startSource(arena: "256MiB", extra: ["--no-background"] + sourceExtra)
        let destination = try start([
            "destination", "--connect", address, "--arena", "256MiB", "--guest-threads", "1", "--pattern", "sequential",
        ] + destinationExtra)
        #expect(destination.awaitLine(containing: "switched over", seconds: 60) != nil, "\(destination.capturedOutput)")
        return (source, destination)
    }

    enum HarnessError: Error { case notListening }
}
