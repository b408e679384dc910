import Foundation
import MigrateAgent

/// A `migrate-agent` child process (source or destination), with its stdout
/// read on a thread of its own so that a line can be awaited with a deadline
/// and the pipe never fills. stderr is passed through (progress lines), or
/// captured into the same output when `captureStderr` is set (tests), or
/// written to the file `stderrPath` (the benchmark keeps each agent's log).
/// Threading: the controlling thread calls its methods; the reader thread only
/// appends to `output` under `lock`.
public final class AgentProcess: @unchecked Sendable {
    public let process = Process()
    private let stdout = Pipe()
    private let lock = NSCondition()
    private var output = ""
    private var closed = false
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
    public init(executable: String, arguments: [String],
                captureStderr: Bool = false, stderrPath: String? = nil) throws(AgentError) {
        precondition(!(captureStderr && stderrPath != nil), "stderr is either captured or written to a file")
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
        process.standardInput = FileHandle.nullDevice
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

    /// Waits until the output has ended (the process closed its stdout), at most `seconds`.
    public func awaitOutputEnd(seconds: Double) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        lock.lock()
        defer { lock.unlock() }
        while !closed && lock.wait(until: deadline) {}
    }

    /// Waits for exit at most `seconds`; on the deadline kills it (SIGKILL) and returns nil.
    public func wait(seconds: Double) -> Int32? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while process.isRunning {
            if Date() > deadline {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            usleep(20_000)  // polling a child's exit: Process has no timed wait
        }
        return process.terminationStatus
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
