import Glibc
import MigrateAgent

/// Where threads run: which CPU a thread is on now, and pinning a thread (or
/// a process's main thread) to one CPU. Glibc's Swift module does not export
/// `sched_getcpu` or `sched_setaffinity` (GNU extensions), so they are looked
/// up once with `dlsym`. Stateless; any thread.
enum CPUPlacement {
    private typealias GetCPU = @convention(c) () -> Int32
    private typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32

    private static let getCPU: GetCPU? = dlsym(nil, "sched_getcpu").map { unsafeBitCast($0, to: GetCPU.self) }
    private static let setAffinity: SetAffinity? = dlsym(nil, "sched_setaffinity").map { unsafeBitCast($0, to: SetAffinity.self) }

    /// The CPU the calling thread runs on, or -1 when unknown.
    @inline(__always) static func current() -> Int32 { getCPU?() ?? -1 }

    /// Pins thread (or process main thread) `tid` — 0 for the calling thread — to `cpu`.
    @discardableResult
    static func pin(_ tid: pid_t = 0, to cpu: Int) -> Bool {
        guard let setAffinity, cpu >= 0, cpu < 1024 else { return false }
        var mask = [UInt64](repeating: 0, count: 16)  // a cpu_set_t of 1024 bits
        mask[cpu / 64] = 1 << UInt64(cpu % 64)
        return mask.withUnsafeBytes { setAffinity(tid, $0.count, $0.baseAddress!) } == 0
    }

    /// Lets thread `tid` (0: the calling thread) run on any of the first `cores` CPUs again.
    @discardableResult
    static func unpin(_ tid: pid_t = 0, cores: Int) -> Bool {
        guard let setAffinity else { return false }
        var mask = [UInt64](repeating: 0, count: 16)
        for cpu in 0..<min(cores, 1024) { mask[cpu / 64] |= 1 << UInt64(cpu % 64) }
        return mask.withUnsafeBytes { setAffinity(tid, $0.count, $0.baseAddress!) } == 0
    }
}

/// How the two sides of a baseline were placed on CPUs.
public enum Placement: String, Codable, Sendable, CaseIterable {
    /// Left to the scheduler, as the agents are: the figure mixes the two regimes below.
    case unpinned
    /// Both sides pinned to CPU 0: no cross-CPU wake-up.
    case sameCPU = "same-cpu"
    /// Pinned to CPUs 0 and 1: every hand-over wakes the other CPU.
    case crossCPU = "cross-cpu"
}
