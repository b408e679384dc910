import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent

/// The demo's two child agents as one thing to wait on: a wait ends when
/// either agent exits, when SIGINT or SIGTERM reaches the demo, or at its
/// deadline, whichever comes first, so a failure of one agent is seen at once
/// and the other is stopped, and an interrupted demo stops both and removes
/// its files instead of leaving them behind.
/// Threading: the controlling thread adds, waits and stops; an agent's exit
/// (its termination handler) and the signal thread only `wake` under `lock`.
final class DemoAgents: @unchecked Sendable {
    private let lock = Condition()
    private var started: [AgentProcess] = []
    private var signal: Int32?
    private var catcher: SignalCatcher?

    /// Starts catching SIGINT and SIGTERM until `close()`.
    init() {
        // Delivered to this thread even if the demo was started with them blocked.
        var interrupts = sigset_t()
        sigemptyset(&interrupts)
        sigaddset(&interrupts, SIGINT)
        sigaddset(&interrupts, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &interrupts, nil)
        catcher = SignalCatcher(signals: [SIGINT, SIGTERM]) { [weak self] in self?.interrupt(by: $0) }
    }

    /// Restores the signals' previous handling.
    func close() {
        catcher?.stop()
        catcher = nil
    }

    /// The signal that interrupted the demo, if one did.
    var interruptedBy: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return signal
    }

    /// Starts an agent whose exit wakes `wait`; if the demo is already
    /// interrupted it is stopped at once.
    func start(executable: String, arguments: [String], name: String) throws(AgentError) -> AgentProcess {
        let agent = try AgentProcess(executable: executable, arguments: arguments, relayStderrAs: name,
                                     onExit: { [weak self] in self?.wake() })
        lock.lock()
        started.append(agent)
        let interrupted = signal != nil
        lock.unlock()
        if interrupted { Self.stop(agent) }
        return agent
    }

    /// Waits until `done()` holds, the demo is interrupted or `deadline` passes;
    /// returns whether `done()` holds.
    @discardableResult
    func wait(until deadline: Date, for done: () -> Bool) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        while !done() && signal == nil && lock.wait(until: deadline) {}
        return done()
    }

    /// Stops an agent that still runs: SIGTERM (with SIGCONT, so that a stopped
    /// one receives it), SIGKILL after 3 s; returns once it has exited.
    static func stop(_ agent: AgentProcess) {
        guard !agent.hasExited else { return }
        kill(agent.pid, SIGTERM)
        kill(agent.pid, SIGCONT)
        if agent.awaitExit(seconds: 3) == nil {
            kill(agent.pid, SIGKILL)
            _ = agent.awaitExit(seconds: .infinity)
        }
    }

    private func wake() {
        lock.lock()
        lock.broadcast()
        lock.unlock()
    }

    /// On the signal thread: records the signal, wakes the waits and tells the
    /// agents to stop, so that a wait on an agent's output ends too.
    private func interrupt(by number: Int32) {
        lock.lock()
        if signal == nil { signal = number }
        let agents = started
        lock.broadcast()
        lock.unlock()
        for agent in agents where !agent.hasExited {
            kill(agent.pid, SIGTERM)
            kill(agent.pid, SIGCONT)
        }
    }
}

/// Catches signals with a handler that only writes the signal's number to a
/// pipe (async-signal-safe); a thread reads the pipe and calls `handler`.
/// Caught (not ignored) signals, so that the child agents, which inherit the
/// disposition across exec, get the default one back.
/// Threading: one catcher at a time (the handler finds the pipe in a static).
public final class SignalCatcher: @unchecked Sendable {
    nonisolated(unsafe) private static var pipeWriteEnd: Int32 = -1
    private let signals: [Int32]
    private let readEnd: Int32
    private let writeEnd: Int32
    private var previous: [Int32: sighandler_t?] = [:]

    public init?(signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readEnd = fds[0]
        writeEnd = fds[1]
        self.signals = signals
        Self.pipeWriteEnd = writeEnd
        startThread(named: "signal-catcher") { [readEnd] in
            var byte: UInt8 = 0
            while true {
                let n = read(readEnd, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                guard n == 1 else { break }
                handler(Int32(byte))
            }
            close(readEnd)
        }
        for number in signals {
            previous[number] = Glibc.signal(number) { caught in
                var byte = UInt8(truncatingIfNeeded: caught)
                _ = write(SignalCatcher.pipeWriteEnd, &byte, 1)
            }
        }
    }

    /// Restores the previous handlers and ends the reading thread.
    public func stop() {
        for number in signals { _ = Glibc.signal(number, previous[number] ?? nil) }
        Self.pipeWriteEnd = -1
        close(writeEnd)
    }
}
