import Glibc

/// What this machine can hold, read before an arena is allocated, so that an
/// arena larger than the machine is refused at once with both sizes named,
/// instead of a source that starts filling memory until the OOM killer comes
/// or a destination that allocates its bookkeeping before connecting.
///
/// An arena is a memfd: shmem, charged to the memory cgroup, never limited by
/// `/dev/shm`'s size (memfds live on the kernel's internal shm mount) nor by
/// `kernel.shmmax` (System V only). The limits that do apply, each checked
/// when it is set:
///
/// - `MemAvailable` in `/proc/meminfo`: the arena's pages end up resident on
///   both sides (the source fills them, the destination receives them);
/// - the memory cgroup's limit minus its usage (v2 `memory.max`, v1
///   `memory.limit_in_bytes`), for the agent's cgroup and every ancestor;
/// - under strict overcommit (`vm.overcommit_memory=2`), `CommitLimit` minus
///   `Committed_AS`: shmem pages are charged against it as they are written;
/// - `RLIMIT_FSIZE`: the memfd's `ftruncate` would fail (and raise SIGXFSZ);
/// - `RLIMIT_AS`: the arena is mapped twice (guest and io views).
///
/// Each needs the arena plus `bookkeepingBytesPerPage` for every page (the
/// address-space limit needs the arena twice). Swap is not counted: a guest
/// whose memory is swapped out during a migration is not a migration.
///
/// Threading: a value; `current()` reads files and may run on any thread.
public struct MemoryBudget: Sendable, Equatable {
    /// Bytes an agent keeps per page besides the page itself, with room to
    /// spare: the destination a state byte, a bit for the digest and, with the
    /// synthetic guest, its 4-byte version, which also arrives as the switch-over
    /// state in a receive buffer of twice its size (about 14 bytes); the source
    /// a version and flags (6).
    public static let bookkeepingBytesPerPage = 32

    /// One limit: how many bytes are left under it, and what it is, for the message.
    public struct Limit: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            /// Resident memory: the arena and its bookkeeping.
            case memory
            /// The memfd's size: the arena alone.
            case fileSize
            /// Address space: two views of the arena and the bookkeeping.
            case addressSpace
        }
        public var kind: Kind
        public var bytesLeft: Int
        public var name: String
        public init(kind: Kind, bytesLeft: Int, name: String) {
            self.kind = kind
            self.bytesLeft = bytesLeft
            self.name = name
        }
    }

    public var limits: [Limit]
    public init(limits: [Limit]) { self.limits = limits }

    /// The bytes an arena of `arenaBytes` in pages of `pageSize` needs under a limit of `kind`.
    public static func needed(arenaBytes: Int, pageSize: Int, under kind: Limit.Kind) -> Int {
        let bookkeeping = (arenaBytes / max(1, pageSize)).multipliedReportingOverflow(by: bookkeepingBytesPerPage).partialValue
        switch kind {
        case .memory: return arenaBytes.addingReportingOverflow(bookkeeping).partialValue
        case .fileSize: return arenaBytes
        case .addressSpace: return arenaBytes.multipliedReportingOverflow(by: 2).partialValue &+ bookkeeping
        }
    }

    /// Throws a clear error naming the arena's size and the limit it exceeds,
    /// or returns when every limit leaves room. `copies`: arenas of this size
    /// the machine must hold at once (`demo` runs a source and a destination
    /// on one machine: 2); per-process limits (rlimits) count one.
    public func check(arenaBytes: Int, pageSize: Int = Arena.systemPageSize, copies: Int = 1) throws(AgentError) {
        let copies = max(1, copies)
        for limit in limits {
            var needed = Self.needed(arenaBytes: arenaBytes, pageSize: pageSize, under: limit.kind)
            if limit.kind == .memory { needed = needed.multipliedReportingOverflow(by: copies).partialValue }
            guard needed > limit.bytesLeft else { continue }
            let arenas = copies > 1 ? "\(copies) arenas of \(ByteSize(bytes: arenaBytes)) (one per agent)"
                : "an arena of \(ByteSize(bytes: arenaBytes))"
            let what: String = switch limit.kind {
            case .memory: "with bookkeeping that is \(Self.approximate(needed)) of memory"
            case .fileSize: "its memfd is \(Self.approximate(needed))"
            case .addressSpace: "its two views and bookkeeping take \(Self.approximate(needed)) of address space"
            }
            throw .unsupported("\(arenas) cannot fit on this machine: \(what), "
                + "but only \(Self.approximate(max(0, limit.bytesLeft))) is left (\(limit.name)); choose a smaller arena")
        }
    }

    /// The limits of this machine and process now; a limit that cannot be read is left out.
    public static func current() -> MemoryBudget {
        var limits: [Limit] = []
        let meminfo = Self.meminfo()
        if let available = meminfo["MemAvailable"] {
            limits.append(Limit(kind: .memory, bytesLeft: available, name: "MemAvailable in /proc/meminfo"))
        }
        if readNumber("/proc/sys/vm/overcommit_memory") == 2, let limit = meminfo["CommitLimit"], let committed = meminfo["Committed_AS"] {
            limits.append(Limit(kind: .memory, bytesLeft: limit - committed,
                                name: "CommitLimit minus Committed_AS, vm.overcommit_memory=2"))
        }
        limits += cgroupLimits()
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_FSIZE.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max {
            limits.append(Limit(kind: .fileSize, bytesLeft: Int(clamping: rl.rlim_cur), name: "RLIMIT_FSIZE, ulimit -f"))
        }
        if getrlimit(Int32(RLIMIT_AS.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max {
            let used = (Self.keyValues("/proc/self/status")["VmSize"]) ?? 0
            limits.append(Limit(kind: .addressSpace, bytesLeft: Int(clamping: rl.rlim_cur) - used, name: "RLIMIT_AS, ulimit -v"))
        }
        return MemoryBudget(limits: limits)
    }

    /// `bytes` as a short approximate size: "23.1 GiB", "512.0 MiB".
    public static func approximate(_ bytes: Int) -> String {
        let value = Double(bytes)
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] where bytes >= 1 << shift {
            let tenths = Int((value / Double(1 << shift) * 10).rounded())
            return "\(tenths / 10).\(tenths % 10) \(unit)"
        }
        return "\(bytes) bytes"
    }

    // MARK: Reading the limits

    private static func meminfo() -> [String: Int] { keyValues("/proc/meminfo") }

    /// Lines `Key:   123 kB` as bytes.
    static func keyValues(_ path: String) -> [String: Int] {
        guard let text = readText(path) else { return [:] }
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let fields = parts[1].split(separator: " ")
            guard let number = fields.first.flatMap({ Int($0) }) else { continue }
            values[String(parts[0])] = fields.count > 1 && fields[1] == "kB" ? number * 1024 : number
        }
        return values
    }

    /// The memory cgroup's limits, v2 and v1, for the process's cgroup and its ancestors.
    private static func cgroupLimits() -> [Limit] {
        guard let text = readText("/proc/self/cgroup") else { return [] }
        var limits: [Limit] = []
        for line in text.split(separator: "\n") {
            // "hierarchy-id:controllers:path"; v2 is "0::path".
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let controllers = fields[1].split(separator: ",")
            var path = String(fields[2])
            // Usage counts the page cache; its inactive part is reclaimed before the cgroup runs out.
            let candidates: [(root: String, limit: String, usage: String, reclaimable: String)]
            if fields[0] == "0" && fields[1].isEmpty {
                candidates = [("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
                              ("/sys/fs/cgroup/unified", "memory.max", "memory.current", "inactive_file")]
            } else if controllers.contains("memory") {
                candidates = [("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")]
            } else { continue }
            while true {
                for c in candidates {
                    let directory = c.root + (path == "/" ? "" : path)
                    guard let limit = readNumber("\(directory)/\(c.limit)"), limit < Int.max / 2,
                          let usage = readNumber("\(directory)/\(c.usage)") else { continue }
                    let reclaimable = statValues("\(directory)/memory.stat")[c.reclaimable] ?? 0
                    limits.append(Limit(kind: .memory, bytesLeft: limit - max(0, usage - reclaimable),
                                        name: "memory cgroup \(path): \(c.limit) minus \(c.usage) less inactive files"))
                }
                guard path != "/", let slash = path.lastIndex(of: "/") else { break }
                path = slash == path.startIndex ? "/" : String(path[..<slash])
            }
        }
        return limits
    }

    /// Lines `key value` (memory.stat).
    private static func statValues(_ path: String) -> [String: Int] {
        guard let text = readText(path) else { return [:] }
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let number = Int(fields[1]) { values[String(fields[0])] = number }
        }
        return values
    }

    /// The first number in a file ("max" and unreadable files give nil).
    private static func readNumber(_ path: String) -> Int? {
        readText(path).flatMap { Int($0.split(whereSeparator: { $0 == " " || $0 == "\n" }).first ?? "") }
    }

    private static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
