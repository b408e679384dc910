import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import SyntheticGuest
import Wire

/// The local install rate: how fast this machine can put pages into a fresh
/// destination-like arena with no network at all. A memfd arena is registered
/// with the same backend as the idle migrations' destination (so MISSING, plus
/// MINOR or RWP where that backend adds it), and every page is installed with
/// `UFFDIO_COPY` in runs of 64 pages (256 KiB, what one background frame
/// carries) from one local buffer, through the destination's own
/// `installAbsent`. Nothing faults. Three passes, each on a fresh memfd freed
/// at its end: the first; a second right after it; and a third while another
/// memfd of the same size, filled page by page first (as the source agent fills
/// its arena before it listens), is held — the memory footprint of a migration
/// between two processes on one machine. On a virtual machine whose host backs
/// guest memory lazily (and takes back what the guest frees), installing into
/// memory the guest has not used lately is much slower; the passes show how
/// much. Also times the 128-bit page hash the destination computes for every
/// page, on the same number of pages. Every installed page is verified.
/// Stateless; runs on the benchmark's controlling thread.
enum LocalInstallBaseline {
    static let pagesPerCopy = 64
    static let segments = 4

    static func measure(bytes: Int, backend kind: BackendKind) throws(AgentError) -> LocalInstallRate {
        let pageSize = Arena.systemPageSize
        precondition(bytes > 0 && bytes % pageSize == 0, "a whole number of pages")
        let runBytes = pagesPerCopy * pageSize
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: runBytes, alignment: pageSize)
        defer { buffer.deallocate() }
        for k in 0..<pagesPerCopy { PageContent.fill(buffer + k * pageSize, index: k, version: 1, pageSize: pageSize) }

        let plan: [(what: String, held: Int)] = [
            ("fresh memfd", 0),
            ("fresh memfd again, right after the first was freed", 0),
            ("fresh memfd while a filled memfd of the same size is held, as a migration's source holds its arena", bytes),
        ]
        var results: [LocalInstallPass] = []
        for (i, pass) in plan.enumerated() {
            results.append(try installPass(bytes: bytes, kind: kind, buffer: buffer, pass: i + 1, what: pass.what, held: pass.held))
        }
        let hash = hashMicrosPerPage(pages: bytes / pageSize, buffer: buffer)
        let best = results.max { $0.megabytesPerSecond < $1.megabytesPerSecond }!
        return LocalInstallRate(bytes: bytes, bytesPerCopy: runBytes, backend: kind, registration: registrationDescription(kind),
                                passes: results, bestMegabytesPerSecond: best.megabytesPerSecond,
                                bestMicrosPerPage: best.microsPerPage, hashMicrosPerPage: hash)
    }

    /// One pass: a fresh arena and backend (and, when `held` > 0, a filled memfd
    /// of `held` bytes kept meanwhile), every page installed and verified, then all of it freed.
    private static func installPass(bytes: Int, kind: BackendKind, buffer: UnsafeRawPointer, pass: Int, what: String,
                                    held: Int) throws(AgentError) -> LocalInstallPass {
        let reportedBefore = MachineInfo.reportedFreeKiB()
        var heldArena: Arena?
        if held > 0 {
            let other = try Arena(size: held, name: "bench-local-install-held")
            for p in 0..<other.pageCount { PageContent.fill(other.ioPage(p), index: p, version: 1, pageSize: other.pageSize) }
            heldArena = other
        }
        defer { withExtendedLifetime(heldArena) {} }
        let arena = try Arena(size: bytes, name: "bench-local-install")
        let backend = try makeBackend(kind, arena: arena)
        defer {
            backend.release()
            backend.uffd.close()
        }
        let pageSize = arena.pageSize
        let pages = arena.pageCount
        var segmentNanos: [UInt64] = []
        var segmentPages: [Int] = []
        var installed = 0
        let start = EventLoop.nowNanos()
        var segmentStart = start
        var segmentFirst = 0
        var page = 0
        for boundary in (1...segments).map({ pages * $0 / segments }) where boundary > segmentFirst {
            while page < boundary {
                let count = min(pagesPerCopy, boundary - page)
                let outcome = try backend.installAbsent(first: page, count: count, from: buffer)
                installed += outcome.installed
                page += count
            }
            let now = EventLoop.nowNanos()
            segmentNanos.append(now - segmentStart)
            segmentPages.append(page - segmentFirst)
            segmentStart = now
            segmentFirst = page
        }
        let nanos = EventLoop.nowNanos() - start
        let reportedAfter = MachineInfo.reportedFreeKiB()
        guard installed == pages else {
            throw .system("local install baseline, pass \(pass): \(installed) of \(pages) pages installed (the rest were already there)")
        }
        for p in 0..<pages where memcmp(arena.guestPage(p), buffer + (p % pagesPerCopy) * pageSize, pageSize) != 0 {
            throw .system("local install baseline, pass \(pass): page \(p) holds "
                + PageContent.describe(arena.guestPage(p), pageSize: pageSize))
        }
        let seconds = Double(nanos) / 1e9
        return LocalInstallPass(
            what: what, heldBytes: held,
            seconds: seconds.rounded(toPlaces: 4),
            megabytesPerSecond: (Double(bytes) / seconds / 1e6).rounded(toPlaces: 1),
            microsPerPage: (Double(nanos) / 1e3 / Double(pages)).rounded(toPlaces: 3),
            segmentMicrosPerPage: zip(segmentNanos, segmentPages).map { (Double($0) / 1e3 / Double(max(1, $1))).rounded(toPlaces: 3) },
            reportedFreeKiB: reportedBefore.flatMap { b in reportedAfter.map { $0 - b } })
    }

    /// The destination hashes every page it installs: the same number of pages, hashed from the hot local buffer.
    private static func hashMicrosPerPage(pages: Int, buffer: UnsafeRawPointer) -> Double {
        let pageSize = Arena.systemPageSize
        var sink: UInt128 = 0
        let start = EventLoop.nowNanos()
        for p in 0..<pages {
            sink ^= PageHash.hash(UnsafeRawBufferPointer(start: buffer + (p % pagesPerCopy) * pageSize, count: pageSize))
        }
        let nanos = EventLoop.nowNanos() - start
        withExtendedLifetime(sink) {}
        return (Double(nanos) / 1e3 / Double(max(1, pages))).rounded(toPlaces: 3)
    }

    static func registrationDescription(_ kind: BackendKind) -> String {
        switch kind {
        case .missing: "MISSING, as the missing backend does"
        case .minor: "MISSING | MINOR, as the minor backend does"
        case .rwp: "MISSING | RWP, as the rwp backend does"
        }
    }
}
