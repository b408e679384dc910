import CUffd
import Dispatch
import Glibc

/// Starts a thread of our own (1 MiB of stack) that runs `body` once, named
/// `name` where the system shows threads (`top -H`, `perf`, `/proc/PID/task/*/comm`;
/// the kernel keeps the first 15 bytes). Foundation's `Thread.name` does not
/// reach the kernel on Linux, so every agent thread showed as `migrate-agent`
/// (and the agents do not load Foundation: see `String(format:)`).
/// The thread keeps what `body` captures alive until it returns.
public func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    /// What the new thread needs, handed over as one retained pointer.
    final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, 1 << 20)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    let start = Unmanaged.passRetained(Start(name, body)).toOpaque()
    var thread = pthread_t()
    let error = pthread_create(&thread, &attributes, { raw in
        let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
        _ = cuffd_name_thread(start.name)  // the kernel truncates to 15 bytes
        start.body()
        return nil
    }, start)
    guard error == 0 else { fatalError("pthread_create for \(name): \(String(cString: strerror(error)))") }
}

/// Starts a named thread that runs `body` once and then signals `finished`,
/// which its owner waits on with a deadline when it stops it.
func startWorkerThread(name: String, finished: DispatchSemaphore, _ body: @escaping @Sendable () -> Void) {
    startThread(named: name) {
        body()
        finished.signal()
    }
}
