import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import MigrateDemo

/// What machine a benchmark ran on, recorded with every run so its figures
/// can be judged: kernel, CPU, cores, memory, load, date and commit.
/// A value type filled on the calling thread.
public struct MachineInfo: Codable, Sendable {
    public var kernel: String
    public var cpuModel: String
    public var cores: Int
    public var virtualMachine: Bool
    public var memoryBytes: Int
    /// 1, 5 and 15 minute load averages when the run started and ended.
    public var loadBefore: [Double]
    public var loadAfter: [Double]
    /// ISO 8601, UTC.
    public var date: String
    public var gitCommit: String?
    /// Uncommitted changes in the work tree the binary was started from.
    public var gitDirty: Bool?
    /// The guest hands freed memory back to its host (virtio-balloon free page
    /// reporting, in blocks of 2^order pages): memory freed and reported is
    /// backed again by the host only when touched again, which is slow. nil when
    /// it does not (or this is no virtual machine).
    public var freePageReportingOrder: Int?

    /// Reads everything but `loadAfter`. The commit comes from `MIGRATE_AGENT_COMMIT`
    /// or, failing that, `git rev-parse HEAD` in the current directory.
    public static func current() -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = field("model name", in: cpuinfo) ?? field("Model", in: cpuinfo) ?? "unknown"
        let flags = field("flags", in: cpuinfo) ?? ""
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let memKiB = field("MemTotal", in: meminfo).flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        var commit = ProcessInfo.processInfo.environment["MIGRATE_AGENT_COMMIT"]
        var dirty: Bool?
        if commit == nil, let head = git(["rev-parse", "HEAD"]), head.count >= 40 {
            commit = head
            dirty = git(["status", "--porcelain", "--untracked-files=no"]).map { !$0.isEmpty }
        }
        return MachineInfo(
            kernel: KernelProbe.kernelRelease(), cpuModel: model, cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            virtualMachine: flags.split(separator: " ").contains("hypervisor"), memoryBytes: memKiB * 1024,
            loadBefore: loadAverage(), loadAfter: [], date: Date().formatted(.iso8601),
            gitCommit: commit, gitDirty: dirty, freePageReportingOrder: freePageReportingOrder())
    }

    /// The free page reporting order when a virtio-balloon device with free page
    /// reporting (feature bit 5) is present, else nil.
    static func freePageReportingOrder() -> Int? {
        let devices = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/bus/virtio/devices")) ?? []
        let reporting = devices.contains { name in
            let base = "/sys/bus/virtio/devices/\(name)"
            let id = (try? String(contentsOfFile: "\(base)/device", encoding: .utf8))?.trimmed
            let features = (try? String(contentsOfFile: "\(base)/features", encoding: .utf8)) ?? ""
            return id == "0x0005" && features.count > 5 && Array(features)[5] == "1"
        }
        guard reporting else { return nil }
        let order = try? String(contentsOfFile: "/sys/module/page_reporting/parameters/page_reporting_order", encoding: .utf8)
        return order.flatMap { Int($0.trimmed) }
    }

    /// KiB of freed memory the guest has reported to the host so far, where the
    /// kernel counts it (`page_reporting.reported_kib`, not in every kernel); else nil.
    static func reportedFreeKiB() -> Int? {
        (try? String(contentsOfFile: "/sys/module/page_reporting/parameters/reported_kib", encoding: .utf8))
            .flatMap { Int($0.trimmed) }
    }

    /// The 1, 5 and 15 minute load averages.
    public static func loadAverage() -> [Double] {
        var load = [Double](repeating: 0, count: 3)
        guard getloadavg(&load, 3) == 3 else { return [] }
        return load.map { ($0 * 100).rounded() / 100 }
    }

    /// The value of the first `key : value` line of a /proc file.
    static func field(_ key: String, in text: String) -> String? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].trimmed == key {
                return parts[1].trimmed
            }
        }
        return nil
    }

    /// Runs git with `arguments` in the current directory; its trimmed output, or nil.
    static func git(_ arguments: [String]) -> String? {
        guard let git = try? AgentProcess(executable: "/usr/bin/env", arguments: ["git"] + arguments, stderrPath: "/dev/null"),
              git.wait(seconds: 30) == 0 else { return nil }
        return git.capturedOutput.trimmed
    }
}
