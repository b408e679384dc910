import Foundation
@testable import MigrateAgent
import Testing
import Wire

/// A connection proves the pre-shared key before anything about the guest
/// moves; a peer that cannot gets a refusal and nothing else, and the source
/// keeps serving the real destination. Real processes on 127.0.0.1.
@Suite("authenticated sessions", .serialized)
struct AuthenticationTests {
    /// A key file other than the harness's: a peer holding it knows the wrong key.
    static func otherKey(in scratch: URL) throws -> String {
        let path = scratch.appendingPathComponent("other.key").path
        try PresharedKey.generate(path: path)
        return path
    }

    @Test("a destination with the wrong key is refused; the source then migrates to the right one")
    func wrongKeyThenRightKey() throws {
        let scratch = AgentHarness.scratchDirectory()
        let sourceReport = scratch.appendingPathComponent("s.json").path
        let (source, address) = try AgentHarness.startSource(arena: "32MiB", extra: ["--report-json", sourceReport])
        defer { source.terminate() }
        let impostor = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "32MiB", "--psk-file", try Self.otherKey(in: scratch),
        ])
        #expect(impostor.wait(seconds: 30) == 1)
        #expect(impostor.capturedOutput.contains("pre-shared key"), "\(impostor.capturedOutput)")
        #expect(!source.hasExited, "a failed key proof must not end the source")

        let destination = try AgentHarness.start(["destination", "--connect", address, "--arena", "32MiB"])
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "\(source.capturedOutput)")
        let report = ReportFormatting.read(SourceReport.self, fromFile: sourceReport)
        #expect(report?.destinationDigestMatch == true)
        #expect((report?.refusedConnections ?? 0) >= 1, "the impostor must be counted as refused")
        #expect(report?.authentication == "pre-shared key")
    }

    @Test("a hello without a key proof gets a refusal, not the memory size", arguments: [8192, 1])
    func helloWithoutProof(pageCount: UInt64) throws {
        let (source, address) = try AgentHarness.startSource(arena: "32MiB")
        defer { source.terminate() }
        let peer = try FakePeer.connect(to: address)
        peer.send(Message.hello(Hello(channel: .urgent, pageSize: 4096, pageCount: pageCount)).encoded())
        let reply = FakePeer.messages(in: peer.readUntilClosed())
        #expect(reply.count == 1, "only a refusal may come back, got \(reply)")
        guard case .error(let code, let message)? = reply.first else {
            Issue.record("expected an error frame, got \(reply)")
            return
        }
        #expect(code == .authenticationFailed)
        #expect(!message.contains("8192") && !message.contains("32 MiB"), "the refusal must not reveal the size: \(message)")
        #expect(!source.hasExited)
    }

    @Test("a wrong key proof gets a refusal and no proof of the source's")
    func wrongProof() throws {
        let (source, address) = try AgentHarness.startSource(arena: "32MiB")
        defer { source.terminate() }
        let peer = try FakePeer.connect(to: address)
        peer.send(Message.authNonce(KeyProof.nonce()).encoded())
        guard case .authNonce? = peer.nextMessage() else {
            Issue.record("the source must answer a nonce with its own nonce")
            return
        }
        peer.send(Message.authProof([UInt8](repeating: 0x42, count: 32)).encoded())
        guard case .error(let code, _)? = peer.nextMessage() else {
            Issue.record("a wrong proof must be refused with an error frame")
            return
        }
        #expect(code == .authenticationFailed)
        #expect(peer.nextMessage() == nil, "nothing may follow the refusal")
    }

    @Test("a connection that goes silent in the handshake is closed at the deadline")
    func silentHandshake() throws {
        let (source, address) = try AgentHarness.startSource(arena: "4MiB", extra: ["--handshake-timeout", "1"])
        defer { source.terminate() }
        let peer = try FakePeer.connect(to: address)
        peer.send(Array(Message.authNonce(KeyProof.nonce()).encoded().prefix(10)))  // half a header, then nothing
        let start = Date()
        let reply = FakePeer.messages(in: peer.readUntilClosed())
        let waited = Date().timeIntervalSince(start)
        #expect(waited < 8, "closed after \(waited) s; the receive timeout is 10 s")
        guard case .error(let code, _)? = reply.last else {
            Issue.record("expected a timeout error frame, got \(reply)")
            return
        }
        #expect(code == .peerTimeout)
    }

    @Test("an idle connection does not keep the source from ending after a migration")
    func idleConnectionDoesNotHoldTheSource() throws {
        let (source, address) = try AgentHarness.startSource(arena: "16MiB")
        defer { source.terminate() }
        let idle = try FakePeer.connect(to: address)
        let destination = try AgentHarness.start(["destination", "--connect", address, "--arena", "16MiB"])
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "\(source.capturedOutput)")
        _ = idle
    }

    @Test("key files and flags: mistakes get one clear line", arguments: [
        (["source"], "a pre-shared key is required"),
        (["source", "--insecure", "--psk-file", "/nonexistent"], "exclude each other"),
        (["source", "--psk-file", "/nonexistent/key"], "cannot open the key file"),
    ])
    func keyMistakes(arguments: [String], expected: String) throws {
        let process = try AgentHarness.startBare(arguments + ["--arena", "4MiB", "--listen", "127.0.0.1:0"])
        #expect(process.wait(seconds: 30) != 0)
        #expect(process.capturedOutput.contains(expected), "\(process.capturedOutput)")
    }

    @Test("a key file others can read, or a short one, is refused", arguments: [(0o644, 32, "accessible by others"), (0o600, 16, "at least 32 bytes")])
    func badKeyFiles(mode: Int, size: Int, expected: String) throws {
        let path = AgentHarness.scratchDirectory().appendingPathComponent("key").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: size),
                                               attributes: [.posixPermissions: mode]))
        let process = try AgentHarness.start(["source", "--psk-file", path, "--arena", "4MiB", "--listen", "127.0.0.1:0"])
        #expect(process.wait(seconds: 30) == 1)
        #expect(process.capturedOutput.contains(expected), "\(process.capturedOutput)")
    }

    @Test("an insecure pair migrates and says loudly that it is insecure")
    func insecurePair() throws {
        let (source, address) = try AgentHarness.startSource(arena: "8MiB", extra: ["--insecure"])
        defer { source.terminate() }
        let destination = try AgentHarness.start(["destination", "--connect", address, "--arena", "8MiB", "--insecure"])
        #expect(destination.wait(seconds: 60) == 0, "\(destination.capturedOutput)")
        #expect(destination.capturedOutput.contains("WARNING: running with --insecure"))
        #expect(source.wait(seconds: 30) == 0)
        #expect(source.capturedOutput.contains("WARNING: running with --insecure"))
    }

    @Test("a keyed destination refuses an insecure source, and the reverse")
    func mixedModesRefused() throws {
        let (source, address) = try AgentHarness.startSource(arena: "8MiB", extra: ["--insecure"])
        defer { source.terminate() }
        let keyed = try AgentHarness.start(["destination", "--connect", address, "--arena", "8MiB"])
        #expect(keyed.wait(seconds: 30) == 1)
        #expect(keyed.capturedOutput.contains("without one"), "\(keyed.capturedOutput)")

        let (keyedSource, keyedAddress) = try AgentHarness.startSource(arena: "8MiB")
        defer { keyedSource.terminate() }
        let insecure = try AgentHarness.start(["destination", "--connect", keyedAddress, "--arena", "8MiB", "--insecure"])
        #expect(insecure.wait(seconds: 30) == 1)
        #expect(insecure.capturedOutput.contains("requires a pre-shared key"), "\(insecure.capturedOutput)")
    }
}

/// A peer that proves the key but asks for pages before switch-over: no page
/// is owed yet, so the request is refused and the pages are not marked sent.
@Suite("requests before switch-over")
struct EarlyRequestTests {
    @Test("an authenticated request before switch-over is refused by name")
    func requestBeforeSwitchover() throws {
        let (source, address) = try AgentHarness.startSource(arena: "4MiB")
        defer { source.terminate() }
        let key = try PresharedKey.load(path: AgentHarness.keyFile)
        let peer = try FakePeer.connect(to: address)
        let ownNonce = KeyProof.nonce()
        peer.send(Message.authNonce(ownNonce).encoded())
        guard case .authNonce(let sourceNonce, _)? = peer.nextMessage() else {
            Issue.record("the source must answer a nonce with its own")
            return
        }
        peer.send(Message.authProof(KeyProof.proof(key, role: .destination, destinationNonce: ownNonce, sourceNonce: sourceNonce)).encoded())
        peer.send(Message.hello(Hello(channel: .urgent, pageSize: 4096, pageCount: 1024)).encoded())
        guard case .authProof? = peer.nextMessage(), case .welcome? = peer.nextMessage() else {
            Issue.record("a peer with the key must get the source's proof and a welcome")
            return
        }
        // No bulk connection yet, so no switch-over: a request now is not from a real destination.
        peer.send(Message.request(first: 0, count: 1, hashes: []).encoded())
        let reply = FakePeer.messages(in: peer.readUntilClosed(), limits: .session(pageSize: 4096, pageCount: 1024))
        guard case .error(let code, let message)? = reply.last else {
            Issue.record("expected a refusal, got \(reply)")
            return
        }
        #expect(code == .protocolViolation && message.contains("before switch-over"), "\(message)")
        #expect(!reply.contains { $0.kind == .pages }, "no page may leave before switch-over")
    }
}
