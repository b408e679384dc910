import Dispatch
import Foundation

/// Starts a named thread of our own (1 MiB of stack) that runs `body` once and
/// then signals `finished`, which its owner waits on with a deadline when it
/// stops it. The thread keeps what `body` captures alive until it returns.
func startWorkerThread(name: String, finished: DispatchSemaphore, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        body()
        finished.signal()
    }
    thread.name = name
    thread.stackSize = 1 << 20
    thread.start()
}
