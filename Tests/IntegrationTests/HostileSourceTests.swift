import Foundation
import Glibc
import MigrateAgent
import SyntheticGuest
import Testing
import Wire

/// A source written by the test that does what a correct one never would:
/// pages nobody asked for, pages twice, a stream trickled a byte at a time.
/// The destination stays correct, says what happened in its report, and
/// never mistakes bytes for progress.
@Suite("a hostile or broken source", .serialized)
struct HostileSourceTests {
    static let pageCount = 256
    static let pageSize = 4096

    /// Page `index` as the synthetic guest's version 1 writes it.
    static func page(_ index: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: pageSize)
        bytes.withUnsafeMutableBytes { PageContent.fill($0.baseAddress!, index: index, version: 1, pageSize: pageSize) }
        return bytes
    }

    @Test("pages sent unasked and twice are installed once and counted in the report")
    func unrequestedAndDuplicatePages() throws {
        let listener = try FakeListener()
        let report = AgentHarness.scratchDirectory().appendingPathComponent("d.json").path
        let destination = try AgentHarness.start([
            "destination", "--connect", listener.address, "--arena", "1MiB", "--guest-threads", "0",
            "--insecure", "--report-json", report,
        ])
        defer { destination.terminate() }
        let urgent = try listener.accept()
        _ = try #require(urgent.readHello())
        urgent.send(Message.welcome(Welcome(pageSize: Self.pageSize, pageCount: UInt64(Self.pageCount), sessionID: 42)).encoded())
        let bulk = try listener.accept()
        _ = try #require(bulk.readHello())
        bulk.send(Message.switchover(arg: 0, state: GuestVersions(pageCount: Self.pageCount, initial: 1).encoded()).encoded())
        // Pages on the urgent connection count as answers only after switch-over.
        #expect(destination.awaitLine(containing: "switched over", seconds: 30) != nil, "\(destination.capturedOutput)")

        // Three pages on the urgent connection that no fault asked for, one of them twice.
        for index in [3, 7, 3, 9] {
            urgent.send(Message.pages(first: UInt64(index), count: 1, flags: [.demand], bytes: Self.page(index)).encoded())
        }
        var all: [UInt8] = []
        for index in 0..<Self.pageCount { all += Self.page(index) }
        // The whole arena on the bulk connection (so 3, 7 and 9 arrive again), then the end.
        for first in stride(from: 0, to: Self.pageCount, by: 64) {
            bulk.send(Message.pages(first: UInt64(first), count: 64, flags: [],
                                    bytes: Array(all[(first * Self.pageSize)..<((first + 64) * Self.pageSize)])).encoded())
        }
        let digest = all.withUnsafeBytes { ArenaDigest.of(arena: $0, pageSize: Self.pageSize).value }
        bulk.send(Message.endOfStream(pagesSent: UInt64(Self.pageCount), digest: digest).encoded())
        // The destination says done; acknowledge it as a source does.
        #expect(urgent.readMessage(limits: .session(pageSize: Self.pageSize, pageCount: UInt64(Self.pageCount)))?.kind == .done)
        urgent.send(Message.done(pagesReceived: UInt64(Self.pageCount), digest: digest).encoded())

        #expect(destination.wait(seconds: 30) == 0, "\(destination.capturedOutput)")
        let r = try #require(ReportFormatting.read(DestinationReport.self, fromFile: report))
        #expect(r.digestMatch && r.arenaVerified && r.sourceConfirmed)
        #expect(r.unrequestedPages == 3, "pages 3, 7, 9 were never requested")
        #expect(r.duplicatePages == 4, "page 3 again on urgent, and 3, 7, 9 again on bulk")
        #expect(r.backgroundPages == Self.pageCount - 3)
    }

    @Test("a source trickling a byte at a time hits the peer timeout")
    func tricklingSource() throws {
        let listener = try FakeListener()
        let destination = try AgentHarness.start([
            "destination", "--connect", listener.address, "--arena", "1MiB", "--insecure", "--peer-timeout", "2",
        ])
        defer { destination.terminate() }
        let urgent = try listener.accept()
        _ = try #require(urgent.readHello())
        let welcome = Message.welcome(Welcome(pageSize: Self.pageSize, pageCount: UInt64(Self.pageCount), sessionID: 42)).encoded()
        let start = Date()
        // One byte of the welcome every half second: bytes keep coming, no frame ever completes.
        for byte in welcome where !destination.hasExited {
            urgent.send([byte])
            usleep(500_000)  // the trickle's pace, not synchronisation: the assertion is on the exit below
        }
        let exit = destination.wait(seconds: 10)
        #expect(exit == 1, "\(destination.capturedOutput)")
        #expect(Date().timeIntervalSince(start) < 8, "the peer timeout is 2 s; bytes must not count as progress")
        #expect(destination.capturedOutput.contains("peer timeout"), "\(destination.capturedOutput)")
    }
}
