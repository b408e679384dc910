import Glibc
import Wire

/// A source's access traces of its memory image: the trace loaded with
/// `--prefetch-trace` (checked against the image before anything listens; its
/// pages lead the background stream) and the one recorded with
/// `--record-trace` (the pages first requested on demand, written when the
/// migration ends, also when it failed after switch-over).
///
/// Threading: built before the loop runs; `recorder` and `fill` on the loop
/// thread; `writeRecorded` after the loop has ended.
final class SourceTraces {
    private let arena: Arena
    private let recordPath: String?
    private let prefetchPath: String?
    /// The prefetch trace's pages, which lead the background stream (the rest
    /// follows round the arena); empty without a prefetch trace.
    let prefetchHead: [Int]
    /// Pages of the prefetch trace at the head of the background stream.
    private let prefetchedPages: Int
    /// Notes what demand requests; the demand server feeds it.
    let recorder: AccessTraceRecorder
    /// The image as checked against the prefetch trace (its hash is reused for the recorded one).
    private var image: AccessTrace.Image?

    /// nil when neither trace is asked for. Refuses, before the migration starts:
    /// a trace without a memory image, a record path that cannot be written, a
    /// prefetch trace that cannot be read or belongs to another image, and a
    /// prefetch trace without a background stream to order.
    static func make(_ configuration: SourceConfiguration, arena: Arena) throws(AgentError) -> SourceTraces? {
        guard configuration.recordTrace != nil || configuration.prefetchTrace != nil else { return nil }
        guard arena.imagePath != nil else {
            throw .invalidArgument("access traces (--record-trace, --prefetch-trace) need a memory image (--memory-file): "
                + "a trace belongs to one image")
        }
        if let path = configuration.recordTrace {
            try ReportFormatting.checkWritable(path, what: "the access trace")
            if let image = arena.imagePath, sameFile(path, image) {
                throw .invalidArgument("the access trace \(path) would replace the memory image it traces")
            }
        }
        return try SourceTraces(configuration, arena: arena)
    }

    /// Whether two paths name one existing file (same device and inode).
    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var x = stat(), y = stat()
        return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    private init(_ configuration: SourceConfiguration, arena: Arena) throws(AgentError) {
        self.arena = arena
        recordPath = configuration.recordTrace
        prefetchPath = configuration.prefetchTrace
        guard let path = configuration.prefetchTrace else {
            prefetchHead = []
            prefetchedPages = 0
            recorder = AccessTraceRecorder(pageCount: arena.pageCount, predicted: nil)
            return
        }
        guard configuration.background else {
            throw .invalidArgument("a prefetch trace orders the background stream, and it is off (--no-background)")
        }
        let trace = try AccessTraceFile.read(path)
        let start = EventLoop.nowNanos()
        image = try trace.check(against: arena, tracePath: path)
        let seconds = Double(EventLoop.nowNanos() - start) / 1e9
        prefetchHead = trace.pages  // each page once and in range: the file's checks
        prefetchedPages = trace.pages.count
        recorder = AccessTraceRecorder(pageCount: arena.pageCount, predicted: trace.pages)
        configuration.progress("source: prefetch trace \(path): its \(trace.pages.count) pages go first, then the other "
            + "\(arena.pageCount - trace.pages.count) in address order (image content hash checked in "
            + "\(String(format: "%.3f", seconds)) s)")
    }

    /// The trace counters so far.
    func fill(_ report: inout SourceReport) {
        report.distinctDemandPages = recorder.count
        if let prefetchPath {
            report.prefetchTraceFile = prefetchPath
            report.tracePagesPrefetched = prefetchedPages
            report.demandPagesPredicted = recorder.predictedHits
        }
    }

    /// Writes the recorded trace once the loop has ended: the whole trace after
    /// a success, what was requested until then after a failure past switch-over
    /// (said in the output and the report: still useful for the next restore),
    /// nothing when it failed earlier. A trace that cannot be written is a
    /// warning; the migration's outcome stands.
    func writeRecorded(switchedOver: Bool, failed: Bool, digest: ArenaDigest?, report: inout SourceReport,
                       progress: (String) -> Void) {
        guard let recordPath else { return }
        guard switchedOver else {
            return progress("source: no access trace written to \(recordPath): the migration failed before switch-over")
        }
        let image = self.image ?? AccessTrace.Image(pageSize: arena.pageSize, pageCount: arena.pageCount, contentHash:
            (digest ?? ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size), pageSize: arena.pageSize)).value)
        let pages = recorder.pages
        do throws(AgentError) {
            try AccessTraceFile.write(AccessTrace(image: image, pages: pages), to: recordPath)
        } catch {
            return progress("source: warning: \(error); the access trace is lost")
        }
        report.traceFile = recordPath
        report.tracePagesRecorded = pages.count
        report.tracePartial = failed
        progress("source: wrote \(failed ? "a PARTIAL" : "the") access trace to \(recordPath): \(pages.count) pages in order of "
            + "first demand request" + (failed ? " (the migration failed after switch-over; the requests until then are in it)" : ""))
    }
}
