import Foundation
import Glibc
import MigrateAgent
import MigrateDemo
import Testing

/// `demo` as a supervisor of its two agents: the failure of either, in any
/// phase, stops the other at once and is reported in the failed agent's words;
/// a signal death is named as one; an interrupted demo stops both agents and
/// removes its files. Real processes; every wait has a deadline.
@Suite("demo supervises its agents", .serialized)
struct DemoFailureTests {
    /// A demo still migrating for a while (1 GiB, one guest thread), with the
    /// pids of its agents and its directory, once the destination's guest runs.
    struct RunningDemo {
        let demo: AgentProcess
        let source: pid_t
        let destination: pid_t
        let directory: String

        func stopAll() {
            for pid in [source, destination] where pid > 0 { kill(pid, SIGCONT); kill(pid, SIGKILL) }
            demo.terminate()
        }
    }

    static func pid(in line: String?) -> pid_t? {
        line.flatMap { $0.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .punctuationCharacters)) }.first }
    }

    static func startDemo(_ extra: [String] = []) throws -> RunningDemo {
        let demo = try AgentHarness.start(["demo", "--arena", "1GiB", "--guest-threads", "1", "--timeout", "300"] + extra)
        let sourceLine = demo.awaitLine(containing: "demo: source is process", seconds: 60)
        let destinationLine = demo.awaitLine(containing: "demo: destination is process", seconds: 120)
        let running = RunningDemo(
            demo: demo, source: pid(in: sourceLine) ?? 0, destination: pid(in: destinationLine) ?? 0,
            directory: sourceLine?.components(separatedBy: "files in ").last ?? "")
        guard running.source > 0, running.destination > 0 else {
            running.stopAll()
            Issue.record("the demo did not start both agents: \(demo.capturedOutput)")
            throw AgentHarness.HarnessError.notListening
        }
        return running
    }

    /// Whether `pid` is gone (exited and reaped).
    static func gone(_ pid: pid_t) -> Bool { kill(pid, 0) == -1 && errno == ESRCH }

    @Test("a stopped destination: demo ends at the source's peer timeout with the source's reason, not at --timeout")
    func stoppedDestination() throws {
        let run = try Self.startDemo()
        defer { run.stopAll() }
        #expect(run.demo.awaitLine(containing: "switched over", seconds: 120) != nil, "\(run.demo.capturedOutput)")
        kill(run.destination, SIGSTOP)
        let started = Date()
        let exit = run.demo.wait(seconds: 90)
        let output = run.demo.capturedOutput
        #expect(exit == 1, "\(output)")
        #expect(Date().timeIntervalSince(started) < 60, "the demo waited beyond the source's failure")
        #expect(output.contains("error: the source failed:") && output.contains("peer timeout"), "\(output)")
        #expect(Self.gone(run.destination) && Self.gone(run.source), "both agents stopped and reaped")
    }

    @Test("a destination killed by SIGKILL is reported as killed by signal 9 (SIGKILL), and the source is stopped")
    func killedDestination() throws {
        let run = try Self.startDemo()
        defer { run.stopAll() }
        #expect(run.demo.awaitLine(containing: "switched over", seconds: 120) != nil, "\(run.demo.capturedOutput)")
        kill(run.destination, SIGKILL)
        let exit = run.demo.wait(seconds: 60)
        let output = run.demo.capturedOutput
        #expect(exit == 1, "\(output)")
        #expect(output.contains("the destination was killed by signal 9 (SIGKILL)"), "\(output)")
        #expect(!output.contains("exited with status 9"), "\(output)")
        #expect(Self.gone(run.source), "the source was stopped")
    }

    @Test("a destination that fails before it connects stops the source at once, with its reason")
    func destinationFailsBeforeConnecting() throws {
        let probe = try AgentHarness.start(["probe", "--json"])
        _ = probe.wait(seconds: 30)
        guard !probe.capturedOutput.contains("\"readWriteProtect\" : true") else {
            print("note: this kernel has the rwp backend; forcing it cannot fail here")
            return
        }
        let demo = try AgentHarness.start(["demo", "--arena", "32MiB", "--protection", "rwp", "--timeout", "300"])
        defer { demo.terminate() }
        let started = Date()
        let exit = demo.wait(seconds: 60)
        let output = demo.capturedOutput
        #expect(exit == 1, "\(output)")
        #expect(Date().timeIntervalSince(started) < 30, "the demo waited after the destination failed")
        #expect(output.contains("error: the destination failed:") && output.contains("rwp"), "\(output)")
        if let source = Self.pid(in: output.split(separator: "\n").first { $0.contains("demo: source is process") }.map(String.init)) {
            #expect(Self.gone(source), "the source was stopped")
        } else {
            Issue.record("no source pid in \(output)")
        }
    }

    @Test("an interrupted demo stops both agents and removes its directory", arguments: [SIGTERM, SIGINT])
    func interrupted(signal: Int32) throws {
        let run = try Self.startDemo()
        defer { run.stopAll() }
        #expect(FileManager.default.fileExists(atPath: run.directory), "\(run.directory)")
        kill(run.demo.pid, signal)
        let exit = run.demo.wait(seconds: 60)
        #expect(exit != nil, "the demo did not end within 60 s of \(signal)")
        #expect(run.demo.ending == .signal(signal), "ends by the same signal: \(String(describing: run.demo.ending))")
        #expect(run.demo.capturedOutput.contains("interrupted by \(ReportFormatting.signalName(signal))"), "\(run.demo.capturedOutput)")
        #expect(!FileManager.default.fileExists(atPath: run.directory), "the demo left \(run.directory)")
        #expect(Self.gone(run.source) && Self.gone(run.destination), "both agents stopped and reaped")
    }

    @Test("--timeout ends the demo and both agents at that time")
    func timeout() throws {
        // Pre-copy against a guest that dirties faster than any round copies: up to 100
        // rounds, far beyond 3 s however fast the agents are (a 1 GiB migration alone no
        // longer took 3 s). Both agents run when the timeout hits.
        let demo = try AgentHarness.start(["demo", "--arena", "512MiB", "--guest-threads", "1", "--precopy-rounds", "100",
                                           "--dirty-rate", "1000000", "--timeout", "3"])
        defer { demo.terminate() }
        let exit = demo.wait(seconds: 60)
        let output = demo.capturedOutput
        #expect(exit == 1, "\(output)")
        #expect(output.contains("the migration did not finish within 3.0 s"), "\(output)")
    }

    @Test("a demo that succeeds exits 0 and leaves no directory behind")
    func succeeds() throws {
        let demo = try AgentHarness.start(["demo", "--arena", "32MiB", "--timeout", "120"])
        defer { demo.terminate() }
        let exit = demo.wait(seconds: 150)
        let output = demo.capturedOutput
        #expect(exit == 0, "\(output)")
        #expect(output.contains("demo: migration complete") && output.contains("digest match        yes"), "\(output)")
        let directory = output.components(separatedBy: "files in ").dropFirst().first?.split(separator: "\n").first.map(String.init)
        #expect(directory.map { !FileManager.default.fileExists(atPath: $0) } == true, "\(output)")
    }
}
