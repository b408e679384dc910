import CLibUV
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// One libuv loop, run by the thread that calls `run`. Every handle created on this
/// loop belongs to it: its methods must run on the loop thread, which they
/// check with `assertOnLoop()` in debug builds. Other threads reach the loop
/// only through `execute`, which wakes it with a `uv_async_t` and refuses work
/// once the loop has shut down.
public final class EventLoop: @unchecked Sendable {
    /// Work queued by other threads and whether the loop still takes any; the
    /// mutex also orders `uv_async_send` before the wake-up handle's close.
    private struct Inbox {
        var work: [@Sendable () -> Void] = []
        var accepting = true
    }

    let raw: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    /// Counts the loop's iterations (`turn`); unreferenced, so it never keeps the loop alive.
    private let turns: UnsafeMutablePointer<uv_prepare_t>
    /// The loop's iteration, advanced just before it polls for I/O: per-turn
    /// budgets (a connection's reads) start again when it changes. Loop thread.
    public private(set) var turn: UInt64 = 0
    private let inbox = Mutex(Inbox())
    /// Set by `run` before the loop starts, read only on that thread afterwards.
    private var loopThread: pthread_t?

    public init() throws(AgentError) {
        // A write to a connection the peer reset must fail with EPIPE, not kill the
        // process: libuv writes with write(2), which raises SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        raw = .allocate(capacity: 1)
        let rc = uv_loop_init(raw)
        guard rc == 0 else { raw.deallocate(); throw .system("uv_loop_init: \(uvError(rc))") }
        wakeup = .allocate(capacity: 1)
        turns = .allocate(capacity: 1)
        uv_async_init(raw, wakeup) { handle in
            EventLoop.owner(of: handle!).drainInbox()
        }
        wakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_prepare_init(raw, turns)
        turns.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_prepare_start(turns) { handle in
            Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue().turn &+= 1
        }
        uv_unref(UnsafeMutableRawPointer(turns).assumingMemoryBound(to: uv_handle_t.self))
    }

    deinit {
        uv_loop_close(raw)
        raw.deallocate()
        wakeup.deallocate()
        turns.deallocate()
    }

    private static func owner(of handle: UnsafeMutablePointer<uv_async_t>) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(handle.pointee.data).takeUnretainedValue()
    }

    /// Runs the loop on the calling thread until every handle is closed.
    public func run() {
        loopThread = pthread_self()
        uv_run(raw, UV_RUN_DEFAULT)
        // The turn counter lives until the end: a read budget spent after `shutdown`
        // must still start again each turn (else a readable socket spins the loop).
        // Unreferenced, it did not keep `uv_run` going; one more pass runs its close.
        closeHandle(turns, nil)
        uv_run(raw, UV_RUN_NOWAIT)
        // Drain what was queued while closing, then close the wake-up handle last.
        drainInbox()
    }

    /// Queues `work` to run on the loop thread. Any thread; coalesced wake-ups
    /// are handled by draining the whole queue. Returns false, and drops `work`,
    /// once the loop has shut down.
    @discardableResult
    public func execute(_ work: @escaping @Sendable () -> Void) -> Bool {
        inbox.withLock { inbox in
            guard inbox.accepting else { return false }
            inbox.work.append(work)
            uv_async_send(wakeup)
            return true
        }
    }

    private func drainInbox() {
        while true {
            let work = inbox.withLock { inbox -> [@Sendable () -> Void] in
                defer { inbox.work.removeAll(keepingCapacity: true) }
                return inbox.work
            }
            if work.isEmpty { return }
            for item in work { item() }
        }
    }

    /// Refuses further `execute` work and closes the wake-up handle, so that `run`
    /// can return once every other handle is closed. Work already queued still runs.
    /// Loop thread.
    public func shutdown() {
        assertOnLoop()
        inbox.withLock { inbox in
            guard inbox.accepting else { return }
            inbox.accepting = false
            closeHandle(wakeup, nil)
        }
    }

    /// Debug-build check that the caller runs on this loop's thread.
    @inline(__always) public func assertOnLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(loopThread.map { pthread_equal($0, pthread_self()) != 0 } ?? true,
               "called off the loop thread", file: file, line: line)
    }

    /// Monotonic nanoseconds (vDSO, no syscall).
    @inline(__always) public static func nowNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// libuv's name and message for a negative status.
func uvError(_ code: Int32) -> String {
    "\(String(cString: uv_err_name(code))) (\(String(cString: uv_strerror(code))))"
}

/// `uv_close` for any handle type, with a callback after libuv is done with it.
func closeHandle<T>(_ handle: UnsafeMutablePointer<T>, _ callback: uv_close_cb?) {
    let h = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)
    if uv_is_closing(h) == 0 { uv_close(h, callback) }
}
