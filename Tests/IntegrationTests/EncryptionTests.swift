import Foundation
import MigrateAgent
import Testing

/// `--encrypt`: every frame after the key proof is sealed. Real processes on
/// 127.0.0.1; every wait has a deadline.
@Suite("encrypted sessions", .serialized)
struct EncryptionTests {
    @Test("an encrypted migration completes with matching digests, and nothing but the key proof is in the clear")
    func encryptedMigration() throws {
        let scratch = AgentHarness.scratchDirectory()
        let sourcePath = scratch.appendingPathComponent("s.json").path
        let destinationPath = scratch.appendingPathComponent("d.json").path
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: ["--encrypt", "--report-json", sourcePath])
        defer { source.terminate() }
        let relay = try TamperingRelay(to: address)
        defer { relay.stop() }
        let destination = try AgentHarness.start([
            "destination", "--connect", relay.address, "--arena", "64MiB", "--guest-threads", "2", "--pattern", "random",
            "--protection", "minor", "--encrypt", "--report-json", destinationPath,
        ])
        #expect(destination.wait(seconds: 120) == 0, "destination: \(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "source: \(source.capturedOutput)")
        let d = try #require(ReportFormatting.read(DestinationReport.self, fromFile: destinationPath))
        let s = try #require(ReportFormatting.read(SourceReport.self, fromFile: sourcePath))
        #expect(d.digestMatch && d.arenaVerified && d.guest?.mismatches == 0)
        #expect(d.demandPages > 0 && d.backgroundPages > 0, "both connections carried pages")
        #expect(s.destinationDigestMatch)
        #expect(d.authentication.contains("encrypted") && s.authentication.contains("encrypted"))
        // The source's nonce and proof are its only plain frames on each connection; a plain
        // bulk stream of 64 MiB would show a magic per frame, over a thousand.
        #expect(relay.magicsFromSource(connection: 0) <= 3, "urgent: \(relay.magicsFromSource(connection: 0)) plain frame headers")
        #expect(relay.magicsFromSource(connection: 1) <= 3, "bulk: \(relay.magicsFromSource(connection: 1)) plain frame headers")
    }

    @Test("an encrypted hybrid migration (2 pre-copy rounds) completes with matching digests")
    func encryptedHybrid() throws {
        let scratch = AgentHarness.scratchDirectory()
        let sourcePath = scratch.appendingPathComponent("s.json").path
        let destinationPath = scratch.appendingPathComponent("d.json").path
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: [
            "--encrypt", "--precopy-rounds", "2", "--dirty-rate", "40000", "--report-json", sourcePath,
        ])
        defer { source.terminate() }
        let destination = try AgentHarness.start([
            "destination", "--connect", address, "--arena", "64MiB", "--guest-threads", "2", "--pattern", "random",
            "--protection", "minor", "--encrypt", "--report-json", destinationPath,
        ])
        #expect(destination.wait(seconds: 120) == 0, "destination: \(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "source: \(source.capturedOutput)")
        let d = try #require(ReportFormatting.read(DestinationReport.self, fromFile: destinationPath))
        let s = try #require(ReportFormatting.read(SourceReport.self, fromFile: sourcePath))
        #expect(d.digestMatch && d.arenaVerified && d.guest?.mismatches == 0)
        #expect(!s.precopyRounds.isEmpty && s.precopyRounds[0].pagesSent == d.pageCount)
        #expect(s.staleAtSwitchover > 0 && d.pagesProtectedAtSwitchover == s.staleAtSwitchover)
        #expect(d.refreshedPages + d.unchangedPages >= d.pagesProtectedAtSwitchover)
        #expect(s.destinationDigestMatch)
    }

    @Test("one side with --encrypt, the other without: refused on both sides, naming the mismatch",
          arguments: [true, false])
    func mismatchRefused(sourceEncrypts: Bool) throws {
        let (source, address) = try AgentHarness.startSource(arena: "8MiB", extra: sourceEncrypts ? ["--encrypt"] : [])
        defer { source.terminate() }
        let destination = try AgentHarness.start(["destination", "--connect", address, "--arena", "8MiB"]
            + (sourceEncrypts ? [] : ["--encrypt"]))
        #expect(destination.wait(seconds: 30) == 1)
        destination.awaitOutputEnd(seconds: 5)  // the exit can be seen before the last line was read
        #expect(destination.capturedOutput.contains("encryption mismatch"), "destination: \(destination.capturedOutput)")
        #expect(destination.capturedOutput.contains(sourceEncrypts ? "this source with it" : "the destination runs with --encrypt"),
                "destination: \(destination.capturedOutput)")
        #expect(source.awaitLine(containing: "encryption mismatch", seconds: 10) != nil, "source: \(source.capturedOutput)")
        #expect(!source.hasExited, "a refused destination must not end the source")
    }

    @Test("--encrypt needs a key: refused with --insecure and without --psk-file", arguments: [
        (["--insecure", "--encrypt"], "cannot be used with --insecure"),
        (["--encrypt"], "--encrypt needs a pre-shared key"),
    ])
    func encryptNeedsKey(arguments: [String], expected: String) throws {
        for role in ["source", "destination"] {
            let endpoint = role == "source" ? ["--listen", "127.0.0.1:0"] : ["--connect", "127.0.0.1:9"]
            let process = try AgentHarness.startBare([role, "--arena", "4MiB"] + endpoint + arguments)
            #expect(process.wait(seconds: 30) != 0)
            process.awaitOutputEnd(seconds: 5)
            #expect(process.capturedOutput.contains(expected), "\(role): \(process.capturedOutput)")
        }
    }

    /// Connection 0 is urgent (demand pages), 1 is bulk (the background stream);
    /// the flip comes well after switch-over (64 KiB into urgent, 4 MiB into
    /// bulk). The destination names the record that failed and its connection,
    /// then resumes the session on new connections (which the relay leaves
    /// alone) like after any dropped connection, and the migration completes.
    @Test("a byte flipped in the encrypted stream closes that connection with the reason named; the session resumes",
          arguments: [0, 1])
    func tamperedByteResumes(connection: Int) throws {
        let scratch = AgentHarness.scratchDirectory()
        let destinationPath = scratch.appendingPathComponent("d.json").path
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: ["--encrypt"])
        defer { source.terminate() }
        let relay = try TamperingRelay(to: address, flipConnection: connection, flipAfter: connection == 0 ? 64 * 1024 : 4 << 20)
        defer { relay.stop() }
        let destination = try AgentHarness.start([
            "destination", "--connect", relay.address, "--arena", "64MiB", "--guest-threads", "2", "--encrypt",
            "--report-json", destinationPath,
        ])
        #expect(destination.wait(seconds: 90) == 0, "destination: \(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "source: \(source.capturedOutput)")
        #expect(relay.didFlip)
        let output = destination.capturedOutput
        let name = connection == 0 ? "urgent" : "bulk"
        #expect(output.contains("the source's \(name) connection ended: protocol violation on the encrypted connection: sealed record")
            && output.contains("does not authenticate"), "destination: \(output)")
        let d = try #require(ReportFormatting.read(DestinationReport.self, fromFile: destinationPath))
        #expect(d.digestMatch && d.arenaVerified && d.guest?.mismatches == 0)
        #expect(d.resumes >= 1)
    }

    /// Each resumed connection proves the key again and gets fresh record keys and
    /// counters: cut connections at random offsets (the resume tests' relay) and
    /// the encrypted session still completes.
    @Test("encrypted connections cut at random offsets are resumed and the migration completes", arguments: [UInt64(7), 8])
    func cutEncryptedConnections(seed: UInt64) throws {
        let scratch = AgentHarness.scratchDirectory()
        let destinationPath = scratch.appendingPathComponent("d.json").path
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: ["--encrypt"])
        defer { source.terminate() }
        let proxy = try CuttingProxy(target: address, cuts: 3, cutAfterBytes: (256 << 10)...(40 << 20), seed: seed)
        defer { proxy.stop() }
        let destination = try AgentHarness.start([
            "destination", "--connect", proxy.address, "--arena", "64MiB", "--guest-threads", "2", "--encrypt",
            "--report-json", destinationPath, "--reconnect-timeout", "20",
        ])
        defer { destination.terminate() }
        #expect(destination.wait(seconds: 90) == 0, "\(destination.capturedOutput)")
        #expect(source.wait(seconds: 30) == 0, "\(source.capturedOutput)")
        let d = try #require(ReportFormatting.read(DestinationReport.self, fromFile: destinationPath))
        #expect(d.digestMatch && d.arenaVerified && d.guest?.mismatches == 0)
        #expect(proxy.cuts >= 1)
    }

    /// Without resume the failed open ends the migration, and both sides say why:
    /// the destination's error frame goes back on the same (urgent) connection.
    @Test("without resume, a flipped byte ends the migration with the reason named on both sides")
    func tamperedByteWithoutResume() throws {
        let (source, address) = try AgentHarness.startSource(arena: "64MiB", extra: ["--encrypt", "--reconnect-timeout", "0"])
        defer { source.terminate() }
        let relay = try TamperingRelay(to: address, flipConnection: 0, flipAfter: 64 * 1024)
        defer { relay.stop() }
        let destination = try AgentHarness.start([
            "destination", "--connect", relay.address, "--arena", "64MiB", "--guest-threads", "2", "--encrypt",
            "--reconnect-timeout", "0",
        ])
        #expect(destination.wait(seconds: 60) == 1)
        destination.awaitOutputEnd(seconds: 5)
        #expect(relay.didFlip)
        let output = destination.capturedOutput
        #expect(output.contains("urgent connection ended: protocol violation on the encrypted connection: sealed record")
            && output.contains("does not authenticate"), "destination: \(output)")
        #expect(source.wait(seconds: 30) == 1, "the source ends too: \(source.capturedOutput)")
        source.awaitOutputEnd(seconds: 5)
        #expect(source.capturedOutput.contains("sealed record"), "source: \(source.capturedOutput)")
    }
}
