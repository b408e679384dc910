/// Settings of the source agent.
public struct SourceConfiguration: Sendable {
    public var listen = SocketAddress(host: "127.0.0.1", port: 0)
    public var arenaSize = 256 << 20
    /// Serve this existing memory image (read-only, pure post-copy) instead of a
    /// fresh arena of `arenaSize`; the workload must not write it.
    public var memoryFile: String?
    public var pageSize = Arena.systemPageSize
    /// With `memoryFile`: write the pages first requested on demand, in order,
    /// to this file when the migration ends (an `AccessTrace`).
    public var recordTrace: String?
    /// With `memoryFile`: the background stream sends this trace's pages first,
    /// in its order, then the rest in address order. A trace of another image is refused.
    public var prefetchTrace: String?
    /// What runs in the arena until switch-over; the engine only pauses it and
    /// moves its state. Default: nothing runs, the memory stays as it is.
    public var workload: @Sendable (Arena) -> any SourceWorkload = { _ in FrozenSourceWorkload() }
    /// Stream every page in the background; off, pages move only on demand
    /// (a benchmark scenario: the guest must then touch every page).
    public var background = true
    /// After a demand request, the background stream continues right behind the
    /// requested page, where a guest reading forwards goes next (as QEMU does).
    public var followDemand = true
    /// Before it listens, the source runs the guest this long with access
    /// tracking; the pages it used most then go first (0: no warm-up).
    public var trackSeconds = 0.0
    /// How often the warm-up scans for accessed pages.
    public var trackIntervalMillis = 100
    /// How accesses are tracked (nil: the best the kernel offers).
    public var accessTracking: AccessTrackingMethod?
    /// Warm up without tracking: the guest's throughput then is the baseline of the tracker's cost.
    public var trackingOff = false
    /// Share of the arena the emulation (`minor-sampling`) watches per interval.
    public var trackSamplePercent = 100
    /// Send the pages the warm-up found hot first (off: address order, for comparison;
    /// the hot set is announced to the destination either way).
    public var hotFirst = true
    /// Pre-copy rounds while the guest runs here (0: pure post-copy).
    public var precopyRounds = 0
    /// Stop pre-copy early once a round dirtied at most this many pages (nil: 1/64 of the arena).
    public var convergePages: Int?
    /// How pre-copy finds dirtied pages (nil: the best the kernel offers).
    public var dirtyTracking: DirtyTrackingMethod?
    /// Microseconds the loop keeps polling instead of sleeping after a demand request (0: off).
    public var busyPollMicros = 50
    /// Whether requests start a busy-poll window while the background stream is
    /// still being written (off: only once the stream is complete, or without one).
    /// A polling loop yields between polls; on busy cores a yield hands the CPU to
    /// another thread until the next tick (4 ms here), and a request arriving
    /// meanwhile waits: with the stream on, polling made the 1-thread fault p99
    /// 1.3-1.5 ms, sleeping in epoll 0.5-0.8 ms (BENCHMARKS.md).
    public var busyPollDuringStream = false
    /// The loop thread's scheduler slice in microseconds (`LoopSlice`; nil: the kernel's default).
    public var loopSliceMicros: Int?
    /// Most bytes a second both connections send together (nil: no limit),
    /// demand first: `BulkPacer` paces the bulk connection (`SO_MAX_PACING_RATE`,
    /// the kernel's TCP) to what the demand pages leave. Just below a shared
    /// link's rate, the link's queue stays empty and a demand page never waits
    /// behind the stream (as QEMU's `max-postcopy-bandwidth`, with demand first).
    public var maxBandwidth: UInt64?
    /// A destination that reads nothing for this long while data waits for it fails the migration.
    public var peerTimeoutSeconds = 10.0
    /// Pages per background frame.
    public var pagesPerFrame = 64
    /// Bytes the background stream may have queued before it waits. Small, so
    /// that one turn of the loop never spends long copying into the socket
    /// while a demand request waits behind it.
    public var bulkHighWater = 1 << 20
    /// The key every connection must prove before anything else (nil: none, `--insecure`).
    public var key: PresharedKey?
    /// After switch-over, how long the session and the guest's memory are kept for a
    /// destination whose connections dropped to resume it (0: a drop ends the migration).
    public var reconnectTimeoutSeconds = 30.0
    /// Seal every frame after the key proof (`--encrypt`; needs `key`). The
    /// other agent must say the same, or the handshake is refused.
    public var encrypt = false
    /// A connection that has not proven the key and said hello within this long is closed.
    public var handshakeTimeoutSeconds = 5.0
    /// Called once the socket listens, with the real port (the CLI prints it).
    public var onListening: @Sendable (SocketAddress) -> Void = { _ in }
    /// Progress lines for stderr.
    public var progress: @Sendable (String) -> Void = { _ in }
    public init() {}
}
