/// When the destination installs background pages on a thread of its own.
public enum InstallThreadUse: String, CaseIterable, Sendable {
    /// While the guest faults (a fault read within `Tuning.installerHandOffNanos`), so
    /// that faults do not wait behind installs; otherwise on the loop, which is faster
    /// with no fault to serve (no hand-off to another CPU).
    case whileFaulting = "auto"
    /// Every background run that finds room in the thread's ring.
    case always
    /// None: the loop installs everything.
    case never

    /// Whether a background run read at `now` goes to the installer thread, the
    /// loop having last read a fault at `lastFault` (0: never). A fault read after
    /// `now` (by a drain between two slices of the same read) counts as now.
    func handsOff(now: UInt64, lastFault: UInt64) -> Bool {
        switch self {
        case .always: true
        case .never: false
        case .whileFaulting: lastFault != 0 && (lastFault >= now || now - lastFault < Tuning.installerHandOffNanos)
        }
    }
}
