import Dispatch
import Foundation
import MigrateAgent

/// A `migrate-agent` child process (source or destination), with its stdout
/// read on a thread of its own so that a line can be awaited with a deadline
/// and the pipe never fills. stderr is passed through (progress lines), or
/// captured into the same output when `captureStderr` is set (tests), or
/// written to the file `stderrPath` (the benchmark keeps each agent's log),
/// or relayed line by line to our stderr and kept (`relayStderrAs`, the demo).
/// Its exit is recorded when it happens (`onExit` is called then), so waits
/// wake at once instead of polling.
/// Threading: the controlling thread calls its methods; the reader threads
/// only append to `output` and `stderrLines`, and the termination handler only
/// records the exit, under `lock`.
public final class AgentProcess: @unchecked Sendable {
    public let process = Process()
    private let stdout = Pipe()
    private let lock = NSCondition()
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
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
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
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = stdout
        if captureStderr { process.standardError = stdout }
        var log: FileHandle?
        if let stderrPath {
            guard FileManager.default.createFile(atPath: stderrPath, contents: nil),
                  let handle = FileHandle(forWritingAtPath: stderrPath) else {
                throw .system("cannot create the log \(stderrPath)")
            }
            log = handle
            process.standardError = handle
        }
        let relay = relayStderrAs.map { _ in Pipe() }
        if let relay { process.standardError = relay }
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [self] ended in
            lock.lock()
            exited = true
            signaled = ended.terminationReason == .uncaughtSignal
            status = ended.terminationStatus
            exitNanos = DispatchTime.now().uptimeNanoseconds
            lock.broadcast()
            lock.unlock()
            onExit?()
        }
        // The child starts with no signal blocked, whatever thread starts it
        // (a dispatch worker blocks them all, and posix_spawn passes the mask on):
        // an agent must be stoppable with SIGTERM, a demo interruptible.
        var none = sigset_t(), callers = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &callers)
        defer { pthread_sigmask(SIG_SETMASK, &callers, nil) }
        do { try process.run() } catch {
            try? log?.close()
            throw .system("cannot start \(executable): \(error.localizedDescription)")
        }
        try? log?.close()  // the child holds its own descriptor
        let handle = stdout.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let data = handle.availableData
                lock.lock()
                if data.isEmpty { closed = true } else { output += String(decoding: data, as: UTF8.self) }
                lock.broadcast()
                lock.unlock()
                if data.isEmpty { return }
            }
        }
        if let relay, let name = relayStderrAs {
            relayClosed = false
            startRelay(relay.fileHandleForReading, name: name)
        }
    }

    private func startRelay(_ handle: FileHandle, name: String) {
        Thread.detachNewThread { [self] in
            var pending = ""
            while true {
                let data = handle.availableData
                pending += String(decoding: data, as: UTF8.self)
                var lines = pending.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                pending = data.isEmpty ? "" : lines.removeLast()
                for line in lines where !line.isEmpty {
                    Console.err(line.hasPrefix("error:") || line.hasPrefix("warning:") ? "\(name): \(line)" : line)
                }
                lock.lock()
                stderrLines += lines.filter { !$0.isEmpty }
                if stderrLines.count > 400 { stderrLines.removeFirst(stderrLines.count - 200) }
                if data.isEmpty { relayClosed = true }
                lock.broadcast()
                lock.unlock()
                if data.isEmpty { return }
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
        kill(process.processIdentifier, SIGKILL)
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
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// The child's process id.
    public var pid: pid_t { process.processIdentifier }

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
