import CUffd
import Dispatch
import Foundation

/// Starts a thread of our own (1 MiB of stack) that runs `body` once, named
/// `name` where the system shows threads (`top -H`, `perf`, `/proc/PID/task/*/comm`;
/// the kernel keeps the first 15 bytes). Foundation's `Thread.name` does not
/// reach the kernel on Linux, so every agent thread showed as `migrate-agent`.
/// The thread keeps what `body` captures alive until it returns.
public func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        _ = cuffd_name_thread(name)  // the kernel truncates to 15 bytes
        body()
    }
    thread.name = name
    thread.stackSize = 1 << 20
    thread.start()
}

/// Starts a named thread that runs `body` once and then signals `finished`,
/// which its owner waits on with a deadline when it stops it.
func startWorkerThread(name: String, finished: DispatchSemaphore, _ body: @escaping @Sendable () -> Void) {
    startThread(named: name) {
        body()
        finished.signal()
    }
}
