import Glibc

/// CPU time a process used, every thread counted (the loop, worker threads, a
/// guest's threads), as `getrusage(RUSAGE_SELF)` gives it, in seconds. The
/// agents report it over the migration's window so that a run shows how much
/// of the machine's CPU the migration took: on a host whose cores are all busy,
/// a migration waits for CPU, not for the network. A value type; reading it is
/// one system call on the calling thread.
public struct ProcessCPU: Codable, Sendable, Equatable {
    public var userSeconds: Double
    public var systemSeconds: Double

    public init(userSeconds: Double, systemSeconds: Double) {
        self.userSeconds = userSeconds
        self.systemSeconds = systemSeconds
    }

    public var totalSeconds: Double { userSeconds + systemSeconds }

    /// What the calling process has used so far.
    public static func current() -> ProcessCPU {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return ProcessCPU(userSeconds: seconds(usage.ru_utime), systemSeconds: seconds(usage.ru_stime))
    }

    /// What was used between `start` and this reading.
    public func since(_ start: ProcessCPU) -> ProcessCPU {
        ProcessCPU(userSeconds: max(0, userSeconds - start.userSeconds), systemSeconds: max(0, systemSeconds - start.systemSeconds))
    }

    private static func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
}
