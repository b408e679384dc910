import CGuestAccess
@testable import MigrateAgent
import SyntheticGuest
import Testing

/// `zeroPages` runs are installed with `UFFDIO_ZEROPAGE` into our own arena (shmem),
/// as the destination does for all-zero pages of the stream.
@Suite("zero-page installs")
struct ZeroPageInstallTests {
    @Test("a zero run maps readable zero pages in both views", arguments: [BackendKind.minor, .missing])
    func zeroRun(kind: BackendKind) throws {
        let arena = try Arena(size: 8 * Arena.systemPageSize, name: "zero-run-\(kind.rawValue)")
        let backend = try makeBackend(kind, arena: arena)
        defer { backend.release() }
        let outcome = try backend.installZero(first: 2, count: 4)
        #expect(outcome.installed == 4 && outcome.alreadyPresent == 0 && !outcome.interrupted)
        // Read from a thread of our own: a page left unmapped would block it on a fault nobody serves.
        let reader = DeadlineThread("zero-reader") { [arena] () -> Bool in
            (2..<6).allSatisfy { page in
                (0..<(arena.pageSize / 8)).allSatisfy { guest_read_u64(arena.guestPage(page) + $0 * 8) == 0 }
            }
        }
        guard let zeros = reader.join(within: 10) else {
            backend.release()
            Issue.record("reading a zero-installed page blocked: it was not mapped")
            return
        }
        #expect(zeros)
        #expect((2..<6).allSatisfy { arena.ioPage($0).isZeroPage(byteCount: arena.pageSize) }, "the io view disagrees")
        // A second install of the same pages is the demand/background race: skipped, not an error.
        let again = try backend.installZero(first: 3, count: 1)
        #expect(again.alreadyPresent == 1 && again.installed == 0)
    }

    @Test("the zero-page test looks at every word of a page")
    func zeroTest() {
        let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        #expect(page.isZeroPage(byteCount: 4096))
        for byte in [0, 7, 8, 63, 64, 2048, 4095] {
            page.storeBytes(of: 1, toByteOffset: byte, as: UInt8.self)
            #expect(!page.isZeroPage(byteCount: 4096), "a 1 at byte \(byte) was missed")
            page.storeBytes(of: 0, toByteOffset: byte, as: UInt8.self)
        }
    }
}
