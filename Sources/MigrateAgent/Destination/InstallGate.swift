import CUffd

/// Mutual exclusion between the loop's reads of a VMM's userfaultfd and the
/// background installer's copies into that VMM's memory (`cuffd_gate.h`).
///
/// Why: a balloon's `MADV_DONTNEED` queues `UFFD_EVENT_REMOVE`, waits until the
/// handler has read it, then zaps the range. The kernel refuses copies (`EAGAIN`)
/// only while the event is unread, so a `UFFDIO_COPY` that began before the event
/// was queued could install the old bytes after the zap, where the guest must
/// read zeros. With the gate the loop never reads while a copy is in flight, and
/// it marks the pages given back before the worker copies again; the worker
/// copies a few pages at a time (`Tuning.gatedInstallPages`), so the loop waits
/// a few microseconds at most for the copy in flight.
///
/// Threading: `close` and `open` on the loop thread only; `enter` and `leave`
/// on the installer's worker only. No allocation after init, no lock.
final class InstallGate: @unchecked Sendable {
    private let word: UnsafeMutablePointer<UInt32>

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: 0)
    }

    deinit { word.deallocate() }

    /// Loop: returns once no copy is in flight; none starts until `open`. When the
    /// copy in flight outlasts the spin (its thread was preempted), `stalled` runs
    /// before the loop sleeps on it: the worker may be `SCHED_IDLE` then, behind
    /// every busy thread, and must be raised to finish its copy.
    @inline(__always) func close(stalled: () -> Void = {}) {
        guard cuffd_gate_close_spinning(word, Tuning.gateSpinNanos) < 0 else { return }
        stalled()
        cuffd_gate_wait_copy(word)
    }

    /// Loop: closes the gate if no copy is in flight; false (and still open) otherwise.
    @inline(__always) func tryClose() -> Bool {
        cuffd_gate_try_close(word) != 0
    }

    /// Loop: lets the worker copy again; what the loop wrote before is visible to it.
    @inline(__always) func open() {
        cuffd_gate_open(word)
    }

    /// Worker: waits while the loop holds the gate closed, then holds a copy in flight.
    @inline(__always) func enter() {
        cuffd_gate_enter(word, Tuning.gateSpinNanos)
    }

    /// Worker: the copy is done.
    @inline(__always) func leave() {
        cuffd_gate_leave(word)
    }
}
