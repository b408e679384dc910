import MigrateAgent
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// Threads that only touch guest memory (never the loop's state), started
/// together and waited for with a deadline: a thread blocked on a fault that
/// nobody resolves never returns by itself, so callers must be able to give up.
/// `cpuSeconds` may be read from any thread while they run.
final class GuestThreads: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var remaining = 0
    /// Each thread's CPU clock while it runs, its final CPU time once it is done.
    /// Locked twice per thread and once per reading: never on a guest access.
    private let clocks = Mutex<[ThreadClock]>([])

    private enum ThreadClock {
        case notStarted
        case running(clockid_t)
        case finished(seconds: Double)
    }

    /// Starts `count` threads running `body(threadIndex)`.
    func start(count: Int, name: String, body: @escaping @Sendable (Int) -> Void) {
        remaining = count
        clocks.withLock { $0 = Array(repeating: .notStarted, count: count) }
        for t in 0..<count {
            startThread(named: "\(name)-\(t)") { [self] in
                var clock = clockid_t()
                if pthread_getcpuclockid(pthread_self(), &clock) == 0 { clocks.withLock { $0[t] = .running(clock) } }
                body(t)
                // Before the thread ends: its clock is gone once it has.
                let seconds = Self.seconds(on: CLOCK_THREAD_CPUTIME_ID) ?? 0
                clocks.withLock { $0[t] = .finished(seconds: seconds) }
                done.signal()
            }
        }
    }

    /// CPU time the threads have used so far, all of them together. Any thread.
    func cpuSeconds() -> Double {
        clocks.withLock { clocks in
            clocks.reduce(0) { sum, clock in
                switch clock {
                case .notStarted: sum
                // Still running while the lock is held: it marks itself finished, under it, before it ends.
                case .running(let id): sum + (Self.seconds(on: id) ?? 0)
                case .finished(let seconds): sum + seconds
                }
            }
        }
    }

    private static func seconds(on clock: clockid_t) -> Double? {
        var t = timespec()
        guard clock_gettime(clock, &t) == 0 else { return nil }
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Waits until every thread has finished, or `seconds` pass; true when all finished.
    func wait(seconds: Double) -> Bool {
        let deadline = DispatchTime.now() + seconds
        while remaining > 0 {
            guard done.wait(timeout: deadline) == .success else { return false }
            remaining -= 1
        }
        return true
    }
}
