/// The engine's fixed tuning numbers, in one place. Frame geometry (pages per
/// frame, payload caps) is a protocol rule and lives in `Wire.FrameLimits`;
/// what is here only changes how fast, not what is valid.
enum Tuning {
    /// Fault messages read from the userfaultfd in one `read`.
    static let faultBatch = 64
    /// Pages of a background frame installed between two looks at the userfaultfd.
    static let backgroundSlice = 16
    /// The background installer's ring (`BackgroundInstaller`): slots, and the
    /// bytes of one slot (a run of pages handed over at once).
    static let installerSlots = 16
    static let installerSlotBytes = 64 * 1024
    /// How long after the loop last read a fault the background installer keeps
    /// running as `SCHED_IDLE` (demand work first).
    static let installerYieldNanos: UInt64 = 2_000_000
    /// Background runs go to the installer thread only while the guest faults
    /// (the loop read a fault within this long); otherwise the loop installs them
    /// itself, which on two cores is faster than handing each run across CPUs.
    static let installerHandOffNanos: UInt64 = 10_000_000
    /// On a VMM's memory (`InstallGate`): pages the installer copies per pass through
    /// the gate (the loop waits at most for one such copy before it reads the
    /// userfaultfd), and how long either side spins for the other before sleeping.
    static let gatedInstallPages = 8
    static let gateSpinNanos: Int64 = 30_000
    /// Demand faults in flight whose phases the destination times at once
    /// (`InFlightFaults`): one per blocked guest thread is enough.
    static let faultsMeasuredInFlight = 1024
    /// Bytes the destination decodes from the bulk connection per loop turn.
    static let bulkReadBudget = 256 * 1024
    /// Pre-copied pages mapped into the guest view per loop turn after switch-over (`HeldPageMapper`).
    static let mapSlicePages = 512
    /// Stale copies hashed per loop turn after a hybrid switch-over (`HeldCopyHashes`): ~20 µs of the loop.
    static let heldHashSlicePages = 64
    /// Bytes the destination decodes from the bulk connection per loop turn while
    /// demand requests are outstanding (`BackgroundFlow`).
    static let bulkReadBudgetDuringDemand = 16 * 1024
    /// ...and for this long after the last of them was answered: a guest that
    /// faults keeps faulting, and with the install cheap (preallocated memory) a
    /// loop reading 256 KiB turns left each new fault waiting behind one.
    static let bulkThrottleAfterDemandNanos: UInt64 = 2_000_000
    /// A request for a page at most this far after the previous one is a guest
    /// reading in address order, which the source's stream follows: no throttle
    /// then (a background frame's worth of pages).
    static let followsStreamPages = 64
    /// The destination's housekeeping interval: liveness, progress.
    static let destinationTickMillis: UInt64 = 50
    /// The source's check for a destination that stopped reading.
    static let sourceWatchdogMillis: UInt64 = 250
    /// How often the source re-paces its bulk stream to what demand leaves of `--max-bandwidth` (`BulkPacer`).
    static let pacingMillis: UInt64 = 10
    /// Connections the source lets prove the key at once; more are closed on accept.
    static let maxPendingConnections = 16
    /// Waits between reconnect attempts of the destination: doubling within this range.
    static let reconnectBackoffNanos: ClosedRange<UInt64> = 50_000_000...2_000_000_000
    /// Longest a reconnect attempt may take (connect, key proof, welcome) before the next.
    static let reconnectAttemptSeconds = 5.0
    /// How long installs may keep answering `EAGAIN` without progress (on the loop,
    /// reading the events between tries; on the installer's thread, waiting for the
    /// loop to read them) before the kernel's answer is taken as a failure. The
    /// kernel keeps refusing until the thread that queued the event runs again,
    /// which a busy host may delay; the tries are 20 µs apart.
    static let installStallNanos: UInt64 = 5_000_000_000
    static let installStallRetryMicros: UInt32 = 20
    /// How long a VMM that connected has to send its regions and userfaultfd.
    static let vmmMessageSeconds = 5.0
    /// Working-set score a page needs to be in the announced hot set: accessed in
    /// each of the last two tracking intervals (`WorkingSetScores`).
    static let hotScoreThreshold: UInt8 = 0xC0
    /// Page indices per `staleSet` or `hotSet` frame (8 bytes each).
    static let indicesPerFrame = 64 * 1024 / 8
}
