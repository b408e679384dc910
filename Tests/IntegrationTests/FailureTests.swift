import Foundation
import Glibc
import MigrateAgent
import MigrateDemo
import Testing
import Wire

/// Bad input and dead peers: one clear message, a non-zero exit, within a deadline, nothing hung.
@Suite("failures end cleanly", .serialized)
struct FailureTests {
    @Test("a killed source ends the destination at the reconnect timeout with the count of missing pages")
    func killedSource() throws {
        let (source, destination) = try AgentHarness.startSlowMigration(destinationExtra: ["--reconnect-timeout", "2"])
        defer { source.terminate(); destination.terminate() }
        source.terminate(signal: SIGKILL)
        let exit = destination.wait(seconds: 20)
        #expect(exit != nil, "the destination did not end within 20 s of the source's death")
        #expect(exit != 0)
        #expect(destination.capturedOutput.contains("pages still missing"), "\(destination.capturedOutput)")
        #expect(destination.capturedOutput.contains("reconnect timeout"), "\(destination.capturedOutput)")
    }

    @Test("a frozen source ends the destination at the peer timeout")
    func frozenSource() throws {
        let (source, destination) = try AgentHarness.startSlowMigration(destinationExtra: ["--peer-timeout", "2", "--reconnect-timeout", "2"])
        defer { kill(source.pid, SIGCONT); source.terminate(); destination.terminate() }
        kill(source.pid, SIGSTOP)
        let exit = destination.wait(seconds: 30)
        #expect(exit != nil && exit != 0, "\(destination.capturedOutput)")
        #expect(destination.capturedOutput.contains("peer timeout"), "\(destination.capturedOutput)")
    }

    @Test("an arena size mismatch is refused at the handshake with both sizes named")
    func sizeMismatch() throws {
        let (source, address) = try AgentHarness.startSource(arena: "64MiB")
        defer { source.terminate() }
        let destination = try AgentHarness.start(["destination", "--connect", address, "--arena", "32MiB"])
        let exit = destination.wait(seconds: 30)
        #expect(exit == 1)
        let output = destination.capturedOutput
        #expect(output.contains("arena size mismatch"), "\(output)")
        #expect(output.contains("16384 pages") && output.contains("8192 pages"), "\(output)")
        #expect(!source.hasExited, "the source must keep waiting for a proper destination")
    }

    @Test("garbage, a wrong version and a wrong magic close only that connection; the source then migrates")
    func malformedFramesAtTheSource() throws {
        let scratch = AgentHarness.scratchDirectory()
        let (source, address) = try AgentHarness.startSource(arena: "32MiB")
        defer { source.terminate() }
        var hello = Message.hello(Hello(channel: .urgent, pageSize: 4096, pageCount: 8192)).encoded()
        hello[4] = 9  // a protocol version this build does not speak
        let cases: [(String, [UInt8])] = [
            ("garbage", Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
            ("version", hello),
            ("magic", [0xDE, 0xAD, 0xBE, 0xEF] + [UInt8](repeating: 0, count: 60)),
        ]
        for (name, bytes) in cases {
            let peer = try FakePeer.connect(to: address)
            peer.send(bytes)
            let reply = FakePeer.messages(in: peer.readUntilClosed())
            guard case .error(_, let message)? = reply.last else {
                Issue.record("\(name): expected an error frame, got \(reply)")
                continue
            }
            switch name {
            case "version": #expect(message.contains("version 9"), "\(message)")
            case "magic": #expect(message.lowercased().contains("magic"), "\(message)")
            default: #expect(!message.isEmpty)
            }
        }
        #expect(!source.hasExited, "a malformed frame must never end the source process")
        let report = scratch.appendingPathComponent("d.json").path
        let destination = try AgentHarness.start(["destination", "--connect", address, "--arena", "32MiB", "--report-json", report])
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        #expect(ReportFormatting.read(DestinationReport.self, fromFile: report)?.digestMatch == true)
    }

    @Test("a source that sends a page index out of range is refused by name")
    func pageOutOfRangeAtTheDestination() throws {
        let listener = try FakeListener()
        // The fake source speaks no key proof.
        let destination = try AgentHarness.start(["destination", "--connect", listener.address, "--arena", "4MiB", "--guest-threads", "1", "--insecure"])
        defer { destination.terminate() }
        let urgent = try listener.accept()
        let hello = try #require(urgent.readHello())
        #expect(hello.channel == .urgent && hello.pageCount == 1024)
        urgent.send(Message.welcome(Welcome(pageSize: 4096, pageCount: 1024, sessionID: 42)).encoded())
        urgent.send(Message.pages(first: 5000, count: 1, flags: [.demand], bytes: [UInt8](repeating: 0, count: 4096)).encoded())
        let exit = destination.wait(seconds: 30)
        #expect(exit == 1)
        #expect(destination.capturedOutput.contains("outside the arena of 1024 pages"), "\(destination.capturedOutput)")
    }

    @Test("a source speaking another protocol version is refused by name")
    func wrongVersionAtTheDestination() throws {
        let listener = try FakeListener()
        let destination = try AgentHarness.start(["destination", "--connect", listener.address, "--arena", "4MiB", "--insecure"])
        defer { destination.terminate() }
        let urgent = try listener.accept()
        _ = urgent.readHello()
        var welcome = Message.welcome(Welcome(pageSize: 4096, pageCount: 1024, sessionID: 42)).encoded()
        welcome[4] = 9
        urgent.send(welcome)
        let exit = destination.wait(seconds: 30)
        #expect(exit == 1)
        #expect(destination.capturedOutput.contains("version 9"), "\(destination.capturedOutput)")
    }

    @Test("command-line mistakes get one clear line and a non-zero exit", arguments: [
        (["source", "--arena", "12345"], "not a whole number"),
        (["source", "--arena", "lots"], "invalid size"),
        (["destination", "--connect", "127.0.0.1:1", "--arena", "4MiB"], "cannot connect"),
        (["destination", "--connect", "nowhere"], "expected HOST:PORT"),
        (["destination", "--connect", "127.0.0.1:7", "--protection", "rwp"], "rwp"),
    ])
    func commandLineErrors(arguments: [String], expected: String) throws {
        let process = try AgentHarness.start(arguments)
        let exit = process.wait(seconds: 30)
        #expect(exit != nil && exit != 0)
        #expect(process.capturedOutput.contains(expected), "\(process.capturedOutput)")
    }

    @Test("a port already in use is one clear line")
    func portInUse() throws {
        let (source, address) = try AgentHarness.startSource(arena: "4MiB")
        defer { source.terminate() }
        let second = try AgentHarness.start(["source", "--listen", address, "--arena", "4MiB"])
        #expect(second.wait(seconds: 30) == 1)
        #expect(second.capturedOutput.contains("already in use"), "\(second.capturedOutput)")
    }
}

/// Whether this machine refuses userfaultfd to an unprivileged process (without
/// UFFD_USER_MODE_ONLY, which the agent does not ask for): vm.unprivileged_userfaultfd is not 1
/// and /dev/userfaultfd is not read-write for others. Where it is allowed there is nothing to refuse.
private let unprivilegedUserfaultfdRefused: Bool = {
    let sysctl = (try? String(contentsOfFile: "/proc/sys/vm/unprivileged_userfaultfd", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines)
    if sysctl == "1" { return false }
    var device = stat()
    let othersReadWrite = S_IROTH | S_IWOTH
    if stat("/dev/userfaultfd", &device) == 0 && device.st_mode & othersReadWrite == othersReadWrite { return false }
    return true
}()

/// Without userfaultfd permission: one line naming the ways out, never a crash.
@Suite("no userfaultfd permission")
struct PermissionTests {
    @Test(
        "probe and destination as an unprivileged user name the ways out",
        .enabled(
            if: unprivilegedUserfaultfdRefused,
            "this machine allows unprivileged userfaultfd (vm.unprivileged_userfaultfd=1 or a world-writable /dev/userfaultfd): nothing to refuse"),
        arguments: [["probe"], ["destination", "--connect", "127.0.0.1:7", "--arena", "4MiB", "--insecure"]]
    )
    func unprivileged(arguments: [String]) throws {
        // As root, drop to nobody (util-linux setpriv); otherwise we are unprivileged already.
        let command: [String] = getuid() == 0
            ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", AgentHarness.binary] + arguments
            : [AgentHarness.binary] + arguments
        let process = try AgentProcess(executable: "/usr/bin/env", arguments: command, captureStderr: true)
        let exit = process.wait(seconds: 30)
        let output = process.capturedOutput
        #expect(exit == 1, "\(output)")
        #expect(output.contains("not permitted"), "\(output)")
        for way in ["root", "CAP_SYS_PTRACE", "vm.unprivileged_userfaultfd=1", "/dev/userfaultfd"] {
            #expect(output.contains(way), "the message should name '\(way)': \(output)")
        }
    }
}

/// The destination dies or freezes: the source ends, non-zero, within a deadline.
@Suite("a dead destination ends the source", .serialized)
struct DeadDestinationTests {
    @Test("a killed destination ends the source at the reconnect timeout with a message")
    func killedDestination() throws {
        let (source, destination) = try AgentHarness.startSlowMigration(sourceExtra: ["--reconnect-timeout", "2"])
        defer { source.terminate(); destination.terminate() }
        destination.terminate(signal: SIGKILL)
        let exit = source.wait(seconds: 20)
        #expect(exit == 1, "\(source.capturedOutput)")
        #expect(source.capturedOutput.contains("connection ended before the migration finished"), "\(source.capturedOutput)")
        #expect(source.capturedOutput.contains("did not resume the session"), "\(source.capturedOutput)")
    }

    @Test("a frozen destination ends the source at the peer timeout")
    func frozenDestination() throws {
        let (source, address) = try AgentHarness.startSource(arena: "1GiB", extra: ["--peer-timeout", "2", "--reconnect-timeout", "2"])
        defer { source.terminate() }
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "1GiB", "--guest-threads", "1",
        ])
        defer { kill(destination.pid, SIGCONT); destination.terminate() }
        #expect(destination.awaitLine(containing: "switched over", seconds: 60) != nil, "\(destination.capturedOutput)")
        kill(destination.pid, SIGSTOP)
        let exit = source.wait(seconds: 30)
        #expect(exit == 1, "\(source.capturedOutput)")
        #expect(source.capturedOutput.contains("peer timeout"), "\(source.capturedOutput)")
    }
}
