import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import MigrateDemo

/// A link rate asked for with `--links`: `1gbit`, `10gbit`, `500mbit`, as `tc` writes rates.
public struct LinkRate: Codable, Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var bitsPerSecond: Double

    public init(parsing text: String) throws(AgentError) {
        let t = text.trimmed.lowercased()
        let units: [(String, Double)] = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)]
        guard let (unit, scale) = units.first(where: { t.hasSuffix($0.0) }), let value = Double(t.dropLast(unit.count)),
              value > 0, value * scale >= 1e6, value * scale <= 400e9 else {
            throw .invalidArgument("invalid link rate '\(text)': expected a rate like 1gbit or 10gbit (1mbit to 400gbit)")
        }
        name = t
        bitsPerSecond = value * scale
    }

    public var description: String { name }
    public var bytesPerSecond: Double { bitsPerSecond / 8 }

    /// The token bucket's depth: 1 ms at the rate, at least 64 KiB (one GSO packet).
    public var burstBytes: Int { max(64 << 10, Int(bytesPerSecond / 1000)) }
    /// How long a packet may wait in the shaper's queue before it is dropped: the queue
    /// holds `rate × latency + burst` bytes, what the bulk stream can stand in front of a demand page.
    public static let queueLatencyMillis = 10

    /// The shaping, as `tc` is given it after `dev DEV`.
    public var tcArguments: [String] {
        ["root", "handle", "1:", "tbf", "rate", name, "burst", "\(burstBytes)", "latency", "\(Self.queueLatencyMillis)ms"]
    }

    /// The shaper's queue, as a network with DiffServ serves it: packets marked
    /// Expedited Forwarding (DSCP 46, as the agents mark their urgent connection)
    /// go first, the rest (the bulk stream) after, both up to the link's rate. Without
    /// it a demand page waits behind the bulk data in the queue: ~1.1 ms at 1 Gbit/s,
    /// TCP's small-queue limit of about 1 ms of data. (This kernel's qdiscs are tbf
    /// and htb; u32 classifies by the TOS byte.) Each is `tc` arguments after `-n NS`,
    /// with DEV for the device.
    public var queueCommands: [[String]] {
        let bits = "\(Int(bitsPerSecond / 1000))kbit"
        let tenth = "\(Int(bitsPerSecond / 10_000))kbit"
        return [
            ["qdisc", "add", "dev", "DEV", "parent", "1:1", "handle", "10:", "htb", "default", "20"],
            ["class", "add", "dev", "DEV", "parent", "10:", "classid", "10:1", "htb", "rate", bits, "ceil", bits],
            ["class", "add", "dev", "DEV", "parent", "10:1", "classid", "10:10", "htb", "rate", tenth, "ceil", bits, "prio", "0"],
            ["class", "add", "dev", "DEV", "parent", "10:1", "classid", "10:20", "htb", "rate", tenth, "ceil", bits, "prio", "1"],
            ["filter", "add", "dev", "DEV", "parent", "10:", "protocol", "ip", "prio", "1", "u32",
             "match", "ip", "tos", "0xb8", "0xfc", "flowid", "10:10"],
        ]
    }
}

/// Two network namespaces of the benchmark's own, `mabench-src-PID` and
/// `mabench-dst-PID`, joined by a veth pair whose two ends are shaped with
/// `tc qdisc ... tbf` (each end's egress, so both directions), as two hosts on
/// a real link. Created by `init`, removed by `remove` (which first kills any
/// process still inside them: only agents this benchmark started there).
/// `sweepStale` removes the namespaces of a benchmark that was killed
/// (SIGKILL) before it could. Threading: the controlling thread, and `remove`
/// also from the signal thread of an interrupted run (`LinkCleanup`).
final class LinkHosts: @unchecked Sendable {
    static let prefix = "mabench-"
    let source: String
    let destination: String
    let sourceAddress: String
    let destinationAddress: String
    let sourceDevice: String
    let destinationDevice: String
    let rate: LinkRate
    private let lock = Condition()
    private var removed = false

    /// Why links cannot be measured here, or nil.
    static func unavailableReason() -> String? {
        if getuid() != 0 { return "not root: network namespaces, veth pairs and tc need root" }
        if ip == nil { return "the ip command (iproute2) is missing" }
        if tc == nil { return "the tc command (iproute2) is missing" }
        if !FileManager.default.isReadableFile(atPath: "/proc/self/ns/net") { return "this kernel has no network namespaces" }
        return nil
    }

    static let ip = tool("ip")
    static let tc = tool("tc")

    private static func tool(_ name: String) -> String? {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Creates both namespaces, the veth pair, addresses and the shaping; on any
    /// failure removes what it made and throws the failing command's output.
    init(rate: LinkRate) throws(AgentError) {
        let pid = getpid()
        self.rate = rate
        source = "\(Self.prefix)src-\(pid)"
        destination = "\(Self.prefix)dst-\(pid)"
        let subnet = 1 + Int(pid % 250)  // a /24 of the benchmark's own (the tests use 10.77.x)
        (sourceAddress, destinationAddress) = ("10.78.\(subnet).1", "10.78.\(subnet).2")
        (sourceDevice, destinationDevice) = ("mabs\(pid % 10_000_000)", "mabd\(pid % 10_000_000)")
        do {
            for command in VethPair.commands(namespaces: (source, destination), devices: (sourceDevice, destinationDevice),
                                             addresses: (sourceAddress, destinationAddress)) {
                try Self.run(Self.ip!, command)
            }
            for (namespace, device) in [(source, sourceDevice), (destination, destinationDevice)] {
                try Self.run(Self.tc!, ["-n", namespace, "qdisc", "add", "dev", device] + rate.tcArguments)
                for command in rate.queueCommands {
                    try Self.run(Self.tc!, ["-n", namespace] + command.map { $0 == "DEV" ? device : $0 })
                }
            }
        } catch {
            remove()
            throw error
        }
    }

    /// The shaping as one command line, for the report.
    var shaping: String {
        (["tc qdisc add dev VETH " + rate.tcArguments.joined(separator: " ")]
            + rate.queueCommands.map { "tc " + $0.map { $0 == "DEV" ? "VETH" : $0 }.joined(separator: " ") }).joined(separator: "; ")
    }

    /// Kills what still runs inside the namespaces and deletes them (which removes the veth pair). Idempotent.
    func remove() {
        lock.lock()
        defer { lock.unlock() }
        guard !removed else { return }
        removed = true
        Self.delete([source, destination])
    }

    /// Namespaces named `mabench-src|dst-PID` whose benchmark process is gone:
    /// left by a run that was killed with SIGKILL. Removes them and returns their names.
    static func sweepStale() -> [String] {
        guard let ip, let listing = try? output(ip, ["netns", "list"]) else { return [] }
        let stale = listing.split(separator: "\n").compactMap { line -> String? in
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefix), let pid = name.split(separator: "-").last.flatMap({ Int32($0) }) else { return nil }
            return kill(pid, 0) != 0 && errno == ESRCH ? name : nil
        }
        delete(stale)
        return stale
    }

    private static func delete(_ namespaces: [String]) {
        guard let ip else { return }
        for namespace in namespaces {
            // Only agents this benchmark started live in its namespaces.
            if let pids = try? output(ip, ["netns", "pids", namespace]) {
                for pid in pids.split(separator: "\n").compactMap({ Int32($0.trimmed) }) {
                    kill(pid, SIGKILL)
                }
            }
            try? run(ip, ["netns", "del", namespace])
        }
    }

    static func run(_ tool: String, _ arguments: [String]) throws(AgentError) { _ = try output(tool, arguments) }

    /// Runs `tool` (30 s at most) and returns its output; throws with it when the tool fails.
    static func output(_ tool: String, _ arguments: [String]) throws(AgentError) -> String {
        let process = try AgentProcess(executable: tool, arguments: arguments, captureStderr: true)
        let status = process.wait(seconds: 30)
        guard status == 0 else {
            if status == nil { process.stop(signal: SIGKILL) }
            let name = URL(fileURLWithPath: tool).lastPathComponent
            throw .system("\(name) \(arguments.joined(separator: " ")): "
                + (status == nil ? "did not finish within 30 s" : process.capturedOutput.trimmed))
        }
        return process.capturedOutput
    }
}

/// The namespaces of the link being measured, removed when SIGINT or SIGTERM
/// reaches the benchmark, which then ends by that signal. Threading: the
/// controlling thread sets `current`; the signal thread reads it under `lock`.
final class LinkCleanup: @unchecked Sendable {
    private let lock = Condition()
    private var hosts: LinkHosts?
    private var catcher: SignalCatcher?

    init(progress: @escaping @Sendable (String) -> Void) {
        var interrupts = sigset_t()
        sigemptyset(&interrupts)
        sigaddset(&interrupts, SIGINT)
        sigaddset(&interrupts, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &interrupts, nil)
        catcher = SignalCatcher(signals: [SIGINT, SIGTERM]) { [weak self] number in
            guard let self else { return }
            self.lock.lock()
            let hosts = self.hosts
            self.lock.unlock()
            if let hosts {
                progress("bench: interrupted by \(ReportFormatting.signalName(number)): removing the network namespaces "
                    + "\(hosts.source) and \(hosts.destination) (and the agents in them)")
                hosts.remove()
            }
            signal(number, SIG_DFL)
            raise(number)
        }
    }

    var current: LinkHosts? {
        get { lock.lock(); defer { lock.unlock() }; return hosts }
        set { lock.lock(); hosts = newValue; lock.unlock() }
    }

    func close() {
        catcher?.stop()
        catcher = nil
    }
}

/// Runs code with the calling thread inside a named network namespace
/// (`/run/netns/NAME`, as `ip netns add` makes it): a socket created there
/// belongs to that namespace for the rest of its life. The thread returns to
/// its own namespace before this returns. `setns` is a GNU extension the Glibc
/// module does not export, looked up with `dlsym`. Stateless; any thread.
enum NetworkNamespace {
    private typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    private static let setns: SetNS? = dlsym(nil, "setns").map { unsafeBitCast($0, to: SetNS.self) }
    private static let newNet: Int32 = 0x4000_0000  // CLONE_NEWNET

    static func run<T>(in name: String?, _ body: () throws(AgentError) -> T) throws(AgentError) -> T {
        guard let name else { return try body() }
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        let target = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        defer {
            if original >= 0 { close(original) }
            if target >= 0 { close(target) }
        }
        guard let setns, original >= 0, target >= 0 else {
            throw .system("cannot open network namespace \(name): \(String(cString: strerror(errno)))")
        }
        guard setns(target, newNet) == 0 else {
            throw .system("setns to network namespace \(name): \(String(cString: strerror(errno)))")
        }
        defer {
            guard setns(original, newNet) == 0 else { fatalError("cannot return to the benchmark's network namespace") }
        }
        return try body()
    }
}
