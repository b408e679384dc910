import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent

/// How busy the machine was with work that is not the benchmark's: CPU time
/// the whole machine spent (`/proc/stat`) minus what this process and its
/// reaped children spent (`getrusage`), over a stretch of wall time. On a
/// shared 2-core machine that is the noise a figure carries.
/// A value type: take a snapshot before, another after, and compare them
/// on one thread, after the children of the stretch have been waited for.
public struct CPUUsage: Sendable {
    /// user + nice + system of all CPUs, seconds.
    var machineBusy: Double
    /// Time stolen by the hypervisor, seconds.
    var steal: Double
    /// This process and its waited-for children, user + system, seconds.
    var own: Double
    var wall: UInt64

    public static func snapshot() -> CPUUsage {
        var busy = 0.0
        var steal = 0.0
        if let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
           let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) {
            let ticks = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
            // user nice system idle iowait irq softirq steal: softirq is left out, because
            // loopback TCP processing of our own traffic may be accounted there.
            if ticks.count >= 8 {
                busy = (ticks[0] + ticks[1] + ticks[2]) / hz
                steal = ticks[7] / hz
            }
        }
        return CPUUsage(machineBusy: busy, steal: steal, own: rusageSeconds(RUSAGE_SELF.rawValue) + rusageSeconds(RUSAGE_CHILDREN.rawValue),
                        wall: EventLoop.nowNanos())
    }

    private static func rusageSeconds(_ who: __rusage_who_t) -> Double {
        var usage = rusage()
        getrusage(who, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Since `start`: the average number of cores busy with other processes, and with steal.
    public func since(_ start: CPUUsage) -> OtherLoad {
        let wall = Double(wall - start.wall) / 1e9
        guard wall > 0 else { return OtherLoad(otherCores: 0, stealCores: 0, seconds: 0) }
        let other = max(0, (machineBusy - start.machineBusy) - (own - start.own)) / wall
        let steal = max(0, steal - start.steal) / wall
        return OtherLoad(otherCores: (other * 100).rounded() / 100, stealCores: (steal * 100).rounded() / 100,
                         seconds: (wall * 1000).rounded() / 1000)
    }
}

/// Cores busy with something other than the benchmark, averaged over a stretch of time.
public struct OtherLoad: Codable, Sendable {
    /// Cores used by other processes (approximate: clock ticks against rusage).
    public var otherCores: Double
    /// Cores' worth of time the hypervisor gave to other guests.
    public var stealCores: Double
    public var seconds: Double

    /// Above this many cores of other work, a figure is flagged as measured on a busy machine.
    public static let busyThreshold = 0.25

    public var isBusy: Bool { otherCores + stealCores >= Self.busyThreshold }
}
