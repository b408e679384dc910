import Wire

/// Answers the destination's demand requests on the urgent connection: the
/// page straight from the io view, or "unchanged" when the hash of the
/// destination's stale copy still matches. Every page it sends is marked, so
/// the background stream skips it; with an access trace, every requested page
/// is also noted there (first request only).
///
/// Hot path: no locks; the page goes to the socket without a copy.
/// Threading: the source's loop thread only (asserted in debug builds).
final class DemandServer {
    struct Counts {
        /// Request frames served.
        var requests = 0
        /// Pages sent on demand.
        var pagesSent = 0
        /// Stale-page requests whose hash still matched: answered "unchanged".
        var unchangedAnswers = 0
    }

    private let loop: EventLoop
    private let arena: Arena
    /// Pages sent since switch-over, on demand or in the background.
    private let sent: PageSet
    /// Pages stale at the destination: sent with the refresh flag.
    private let stale: PageSet
    private let busyPoll: BusyPoll
    /// Notes every requested page for an access trace (nil: no trace).
    private let trace: AccessTraceRecorder?
    private(set) var counts = Counts()

    init(loop: EventLoop, arena: Arena, sent: PageSet, stale: PageSet, busyPoll: BusyPoll, trace: AccessTraceRecorder? = nil) {
        self.loop = loop
        self.arena = arena
        self.sent = sent
        self.stale = stale
        self.busyPoll = busyPoll
        self.trace = trace
    }

    /// Answers one request frame (indices already checked against the arena by the parser).
    func serve(_ frame: ParsedFrame, on urgent: TCPConnection) {
        loop.assertOnLoop()
        let first = Int(frame.header.arg)
        let count = Int(frame.header.count)
        let hashes = RequestFlags(rawValue: frame.header.flags).contains(.hasHash) ? frame.payload : nil
        counts.requests += 1
        busyPoll.extend(from: EventLoop.nowNanos())
        for page in first..<(first + count) {
            sent.insert(page)
            trace?.noteRequest(page)
            let bytes = UnsafeRawBufferPointer(start: arena.ioPage(page), count: arena.pageSize)
            if let hashes, hashes.loadUnaligned(fromByteOffset: (page - first) * 16, as: UInt128.self) == PageHash.hash(bytes).littleEndian {
                urgent.send(kind: .unchanged, count: 1, arg: UInt64(page))
                counts.unchangedAnswers += 1
            } else {
                let flags: PageFlags = stale.contains(page) ? [.demand, .refresh] : [.demand]
                urgent.send(kind: .pages, flags: flags.rawValue, count: 1, arg: UInt64(page), payload: bytes)
                counts.pagesSent += 1
            }
        }
    }
}
