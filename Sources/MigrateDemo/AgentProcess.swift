import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import CUffd

/// A `migrate-agent` child process (source or destination), with its stdout
/// read on a thread of its own so that a line can be awaited with a deadline
/// and the pipe never fills. stderr is passed through (progress lines), or
/// captured into the same output when `captureStderr` is set (tests), or
/// written to the file `stderrPath` (the benchmark keeps each agent's log),
/// or relayed line by line to our stderr and kept (`relayStderrAs`, the demo).
/// Its exit is recorded when it happens (`onExit` is called then), so waits
/// wake at once instead of polling. Started with `posix_spawn`: the agents do
/// not load Foundation, whose `Process` this replaces.
/// Threading: the controlling thread calls its methods; the reader threads
/// only append to `output` and `stderrLines`, and the waiting thread only
/// records the exit, under `lock`.
public final class AgentProcess: @unchecked Sendable {
    /// The child's process id.
    public let pid: pid_t
    private let lock = Condition()
    private var output = ""
    private var closed = false
    private var stderrLines: [String] = []
    /// The relayed stderr has ended (true when nothing is relayed).
    private var relayClosed = true
    private var exited = false
    private var signaled = false
    private var status: Int32 = 0
    private var exitNanos: UInt64 = 0
    /// The file stderr goes to, when one was given.
    public let stderrPath: String?

    /// The binary of the running process (`/proc/self/exe`): what the
    /// `migrate-agent` CLI passes as `executable` so that the demo and the
    /// benchmark start the same build they are part of. Library code never
    /// assumes it; callers name the binary to start.
    public static var currentExecutable: String {
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &path, path.count - 1)
        return n > 0 ? String(cString: path) : CommandLine.arguments[0]
    }

    /// Starts `executable` (a `migrate-agent` binary, or any program for tests)
    /// with `arguments`. `stderrPath`: the child's stderr goes to this file
    /// (created or truncated); it cannot be combined with `captureStderr`.
    /// `relayStderrAs`: the child's stderr is copied line by line to ours (an
    /// `error:` or `warning:` line prefixed with this name, so that it is not
    /// taken for the parent's own) and kept for `errorLine`. `onExit` runs on
    /// another thread once the child has exited.
    public init(executable: String, arguments: [String],
                captureStderr: Bool = false, stderrPath: String? = nil, relayStderrAs: String? = nil,
                onExit: (@Sendable () -> Void)? = nil) throws(AgentError) {
        precondition([captureStderr, stderrPath != nil, relayStderrAs != nil].filter { $0 }.count <= 1,
                      "stderr is either captured, written to a file or relayed")
        self.stderrPath = stderrPath
        let stdout = try Self.pipe()
        var childStderr: Int32? = captureStderr ? stdout.write : nil
        var log: Int32 = -1
        if let stderrPath {
            log = open(stderrPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard log >= 0 else {
                close(stdout.read); close(stdout.write)
                throw .system("cannot create the log \(stderrPath): \(String(cString: strerror(errno)))")
            }
            childStderr = log
        }
        var relay: (read: Int32, write: Int32)?
        if relayStderrAs != nil {
            do { relay = try Self.pipe() } catch {
                close(stdout.read); close(stdout.write)
                throw error
            }
            childStderr = relay?.write
        }
        let spawned = Self.spawn(executable, arguments, stdout: stdout.write, stderr: childStderr)
        // The child holds its own descriptors: the parent's write ends close, so the readers see the end.
        close(stdout.write)
        if log >= 0 { close(log) }
        if let relay { close(relay.write) }
        guard spawned.error == 0 else {
            close(stdout.read)
            if let relay { close(relay.read) }
            throw .system("cannot start \(executable): \(String(cString: strerror(spawned.error)))")
        }
        let pid = spawned.pid
        self.pid = pid
        startThread(named: "agent-stdout") { [self] in
            Self.readAll(stdout.read) { bytes in
                lock.withLock {
                    if let bytes { output += String(decoding: bytes, as: UTF8.self) } else { closed = true }
                    lock.broadcast()
                }
            }
        }
        if let relay, let name = relayStderrAs {
            relayClosed = false
            startRelay(relay.read, name: name)
        }
        startThread(named: "agent-wait") { [self] in
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            lock.withLock {
                exited = true
                let signal = raw & 0x7f  // WTERMSIG; 0 for a normal exit
                signaled = signal != 0
                status = signaled ? signal : (raw >> 8) & 0xff
                exitNanos = DispatchTime.now().uptimeNanoseconds
                lock.broadcast()
            }
            onExit?()
        }
    }

    /// A pipe whose ends close on exec (the child gets only the end it is given).
    private static func pipe() throws(AgentError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let result = cuffd_pipe_cloexec(&fds)
        guard result == 0 else { throw .system("pipe: \(String(cString: strerror(-result)))") }
        return (fds[0], fds[1])
    }

    /// `posix_spawn` with stdin from /dev/null, stdout (and stderr when given) on
    /// these descriptors, every signal at its default and none blocked, whatever
    /// the calling thread has (a dispatch worker blocks them all): an agent must
    /// be stoppable with SIGTERM, a demo interruptible. The child's pid, or the errno.
    private static func spawn(_ executable: String, _ arguments: [String],
                              stdout: Int32, stderr: Int32?) -> (pid: pid_t, error: Int32) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        if let stderr { posix_spawn_file_actions_adddup2(&actions, stderr, 2) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let error = posix_spawn(&pid, executable, &actions, &attributes, argv, Glibc.environ)
        return (pid, error)
    }

    /// Reads `fd` to its end, handing each chunk to `chunk`, then nil; closes it.
    private static func readAll(_ fd: Int32, _ chunk: (UnsafeRawBufferPointer?) -> Void) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate(); close(fd) }
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            chunk(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        chunk(nil)
    }

    private func startRelay(_ fd: Int32, name: String) {
        startThread(named: "agent-stderr") { [self] in
            var pending = ""
            Self.readAll(fd) { bytes in
                if let bytes { pending += String(decoding: bytes, as: UTF8.self) }
                var lines = pending.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                pending = bytes == nil ? "" : lines.removeLast()
                for line in lines where !line.isEmpty {
                    Console.err(line.hasPrefix("error:") || line.hasPrefix("warning:") ? "\(name): \(line)" : line)
                }
                lock.withLock {
                    stderrLines += lines.filter { !$0.isEmpty }
                    if stderrLines.count > 400 { stderrLines.removeFirst(stderrLines.count - 200) }
                    if bytes == nil { relayClosed = true }
                    lock.broadcast()
                }
            }
        }
    }

    /// Waits for an output line containing `text`; returns the line, or nil at the deadline or EOF.
    public func awaitLine(containing text: String, seconds: Double) -> String? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        lock.lock()
        defer { lock.unlock() }
        while true {
            if let line = output.split(separator: "\n").first(where: { $0.contains(text) }) { return String(line) }
            if closed || !lock.wait(until: deadline) { return nil }
        }
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it, or nil at the deadline or EOF.
    public func awaitLine(prefix: String, seconds: Double) -> String? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        lock.lock()
        defer { lock.unlock() }
        while true {
            if let line = output.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) {
                return String(line.dropFirst(prefix.count))
            }
            if closed || !lock.wait(until: deadline) { return nil }
        }
    }

    /// Waits until the output has ended (the process closed its stdout, and
    /// its relayed stderr), at most `seconds`.
    public func awaitOutputEnd(seconds: Double) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        lock.lock()
        defer { lock.unlock() }
        while !(closed && relayClosed) && lock.wait(until: deadline) {}
    }

    /// Waits for exit at most `seconds`; on the deadline kills it (SIGKILL) and returns nil.
    /// The status is the exit status, or the signal's number when a signal ended it (`ending`).
    /// Its output is read to the end first (bounded), so `capturedOutput` is complete.
    public func wait(seconds: Double) -> Int32? {
        if let status = awaitExit(seconds: seconds) {
            awaitOutputEnd(seconds: Self.outputDrainSeconds)
            return status
        }
        kill(pid, SIGKILL)
        _ = awaitExit(seconds: .infinity)
        return nil
    }

    /// Waits for exit at most `seconds` and returns its status, or nil if it still runs.
    public func awaitExit(seconds: Double) -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if seconds.isFinite {
            let deadline = Date(timeIntervalSinceNow: seconds)
            while !exited && lock.wait(until: deadline) {}
        } else {
            while !exited { lock.wait() }
        }
        return exited ? status : nil
    }

    /// How long a wait after the exit lets the reader threads reach the end of
    /// the output: the pipes end at once unless a grandchild still holds them.
    static let outputDrainSeconds = 2.0

    /// Whether it has exited (its exit recorded).
    public var hasExited: Bool {
        lock.lock()
        defer { lock.unlock() }
        return exited
    }

    /// How it ended, or nil while it runs.
    public var ending: Ending? {
        lock.lock()
        defer { lock.unlock() }
        guard exited else { return nil }
        return signaled ? .signal(status) : .exit(status)
    }

    /// When it exited (`DispatchTime` uptime nanoseconds), to tell which of two ended first; nil while it runs.
    public var exitedAtNanos: UInt64? {
        lock.lock()
        defer { lock.unlock() }
        return exited ? exitNanos : nil
    }

    /// How a child process ended.
    public enum Ending: Equatable, Sendable, CustomStringConvertible {
        case exit(Int32)
        case signal(Int32)

        /// "exited with status 1", "killed by signal 9 (SIGKILL)".
        public var description: String {
            switch self {
            case .exit(let status): "exited with status \(status)"
            case .signal(let number): "killed by signal \(number) (\(ReportFormatting.signalName(number)))"
            }
        }

        public var succeeded: Bool { self == .exit(0) }
    }

    /// The text of the child's last `error:` line (without the prefix), from
    /// its relayed or captured stderr or its stderr file; nil when it printed none.
    public var errorLine: String? {
        if hasExited { awaitOutputEnd(seconds: Self.outputDrainSeconds) }
        lock.lock()
        var lines = stderrLines + output.split(separator: "\n").map(String.init)
        lock.unlock()
        if let stderrPath, let text = try? String(contentsOfFile: stderrPath, encoding: .utf8) {
            lines += text.split(separator: "\n").map(String.init)
        }
        return lines.last(where: { $0.hasPrefix("error: ") }).map { String($0.dropFirst("error: ".count)) }
    }

    public func terminate(signal: Int32 = SIGKILL) {
        if !hasExited { kill(pid, signal) }
    }

    /// The last `lines` lines of the stderr file (`stderrPath`), each prefixed
    /// with `name`, for a failure message; empty without a file.
    public func stderrTail(lines: Int = 8, name: String) -> String {
        guard let stderrPath else { return "" }
        let text = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).map { "    \(name): \($0)" }.joined(separator: "\n")
    }

    public var capturedOutput: String {
        lock.lock()
        defer { lock.unlock() }
        return output
    }
}
