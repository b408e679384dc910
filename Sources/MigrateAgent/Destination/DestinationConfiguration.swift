/// Settings of the destination agent.
public struct DestinationConfiguration: Sendable {
    public var source = SocketAddress(host: "127.0.0.1", port: 7000)
    public var arenaSize = 256 << 20
    public var pageSize = Arena.systemPageSize
    /// nil: the best backend the kernel offers.
    public var protection: BackendKind?
    /// What runs in the arena from switch-over on, fed the state the source sent
    /// (nil: no guest runs; memory only arrives).
    public var workload: @Sendable () -> (any DestinationWorkload)? = { nil }
    /// The key every connection proves, and the source must prove back (nil: none, `--insecure`).
    public var key: PresharedKey?
    /// Rewrite the counters and the demand-latency histogram to this Prometheus
    /// text file every second and at the end (nil: none).
    public var metricsFile: String?
    /// Handler mode: a Unix socket where a VMM hands over its regions and userfaultfd
    /// (Firecracker's protocol); the arena size then comes from the regions.
    public var vmmSocket: String?
    /// How long to wait for the VMM to connect and hand over.
    public var vmmHandoverTimeoutSeconds = 60.0
    /// When the migration fails, SIGKILL the VMM: its missing pages will never come,
    /// and a VMM whose handler died otherwise hangs forever.
    public var killVMMOnFailure = true
    /// After switch-over, how long to keep reconnecting and resuming when a
    /// connection drops or goes silent (0: a drop ends the migration).
    public var reconnectTimeoutSeconds = 30.0
    /// Seal every frame after the key proof (`--encrypt`; needs `key`). The
    /// other agent must say the same, or the handshake is refused.
    public var encrypt = false
    /// With no byte from the source for this long, the migration fails.
    public var peerTimeoutSeconds = 10.0
    /// Microseconds the loop keeps polling instead of sleeping after demand activity (0: off).
    public var busyPollMicros = 50
    /// The loop thread's scheduler slice in microseconds (`LoopSlice`; nil: the kernel's default).
    public var loopSliceMicros: Int?
    /// Read the background stream in small slices while demand requests are outstanding.
    public var throttleBackgroundDuringDemand = true
    /// When background pages are installed on a thread of their own (`BackgroundInstaller`).
    public var installThread = InstallThreadUse.whileFaulting
    /// Allocate the whole arena before connecting (minor backend): pages that
    /// arrive are then copied into memory already there and mapped with
    /// `UFFDIO_CONTINUE`, and a machine short of memory fails before the migration.
    public var preallocate = true
    /// That thread yields the CPU (`SCHED_IDLE`) while the guest faults: demand first.
    public var yieldToDemand = true
    /// A failure after switch-over with every page here but some stale lets the guest
    /// run on the stale copies (RWP_ASYNC) instead of stopping it. Explicit: stale data.
    public var keepStaleOnFailure = false
    /// How long the guest may run after the last page arrived.
    public var guestDeadlineSeconds = 120.0
    public var progress: @Sendable (String) -> Void = { _ in }
    public init() {}
}
