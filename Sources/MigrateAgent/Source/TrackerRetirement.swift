import Dispatch
import FoundationEssentials
import Glibc

/// Stops pre-copy's dirty tracking after switch-over. Unregistering write
/// protection over the whole guest view walks every page-table entry (about
/// 15 ms for 512 MiB here); on the loop that was downtime. A tracker that needs
/// no loop (`PagemapScanTracker`) is stopped on a thread of its own, and the
/// source waits for it once the loop has ended; one attached to the loop (the
/// synchronous tracker) is stopped where it runs.
///
/// Threading: created on the loop thread; `wait` after the loop has ended.
final class TrackerRetirement: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    // Touched by the stopping thread only, until `done` is signalled.
    private let tracker: any DirtyTracking

    init(_ tracker: any DirtyTracking) {
        self.tracker = tracker
        guard tracker.method == .pagemapScan else {
            tracker.stop()
            done.signal()
            return
        }
        startThread(named: "tracker-stop") { [self] in
            self.tracker.stop()
            done.signal()
        }
    }

    /// Waits until the tracker is stopped; false if it took longer than `seconds`.
    func wait(seconds: Double) -> Bool { done.wait(timeout: .now() + seconds) == .success }
}
