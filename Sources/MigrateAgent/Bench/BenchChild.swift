import Foundation
import Glibc

/// A child process of the benchmark (a source, a destination, or the loopback
/// server): stdout read on a thread of its own so a line can be awaited with a
/// deadline, stderr (progress lines) written to a log file so it does not mix
/// with the benchmark's own output. Like `AgentProcess`, which passes stderr
/// through.
/// Threading: the controlling thread calls the methods; the reader thread only
/// appends to `output` under `lock`; `exited` is signalled by Foundation's
/// termination handler.
final class BenchChild: @unchecked Sendable {
    let name: String
    let logPath: String
    private let process = Process()
    private let stdout = Pipe()
    private let lock = NSCondition()
    private var output = ""
    private var closed = false
    private let exited = DispatchSemaphore(value: 0)
    private var status: Int32?

    init(name: String, executable: String, arguments: [String], logPath: String) throws(AgentError) {
        self.name = name
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw .system("cannot create the log \(logPath)") }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = stdout
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [exited] _ in exited.signal() }
        do { try process.run() } catch {
            throw .system("cannot start \(executable) \(arguments.first ?? ""): \(error.localizedDescription)")
        }
        try? log.close()
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

    var pid: pid_t { process.processIdentifier }

    /// Waits for a stdout line starting with `prefix`; the rest of it, or nil at the deadline or EOF.
    func awaitLine(prefix: String, seconds: Double) -> String? {
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

    /// Waits for the exit at most `seconds`; on the deadline kills the child (SIGKILL) and returns nil.
    func wait(seconds: Double) -> Int32? {
        if let status { return status }
        if exited.wait(timeout: .now() + seconds) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        status = process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
        return status
    }

    /// Sends `signal` if the child still runs, then reaps it.
    func stop(signal: Int32 = SIGTERM) {
        if process.isRunning { kill(process.processIdentifier, signal) }
        if wait(seconds: 5) == nil { process.waitUntilExit() }
    }

    /// The last `lines` lines of its stderr log, for a failure message.
    func logTail(lines: Int = 8) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).map { "    \(name): \($0)" }.joined(separator: "\n")
    }
}
