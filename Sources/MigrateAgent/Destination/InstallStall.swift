import Glibc

/// How long installs have been refused with `EAGAIN` without progress. The kernel
/// refuses while a userfaultfd event is unread, and after it was read until the
/// thread that queued it runs again, which a busy host may delay: the installer
/// tries again `Tuning.installStallRetryMicros` apart, for at most
/// `Tuning.installStallNanos`, then the refusal is a failure.
///
/// Threading: a value owned by the one thread that installs (the loop or the worker).
struct InstallStall {
    private var since: UInt64?

    /// The bound, for messages.
    static var seconds: UInt64 { Tuning.installStallNanos / 1_000_000_000 }

    /// A try installed something.
    mutating func progressed() { since = nil }

    /// A try installed nothing: false once the bound has passed; otherwise true, after
    /// a pause before the next try (none before the first retry: the event may be read by then).
    mutating func waitBeforeRetry() -> Bool {
        let now = EventLoop.nowNanos()
        guard let since else {
            self.since = now
            return true
        }
        guard now &- since <= Tuning.installStallNanos else { return false }
        usleep(Tuning.installStallRetryMicros)
        return true
    }
}
