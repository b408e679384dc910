import CUffd
import Glibc

/// Asks the scheduler for a short time slice for the calling thread (EEVDF's
/// custom slice, Linux 6.12+, no privilege needed): a thread with a short
/// slice has an earlier virtual deadline, so when it wakes it preempts a
/// thread that runs on, instead of waiting for that thread's slice to end.
/// For a loop that sleeps between events, that is the wake-up of every demand
/// fault on a host whose cores are all busy.
///
/// Threading: affects the calling thread and the threads it creates afterwards
/// (they inherit it): call it on the loop thread once the others are started.
enum LoopSlice {
    /// Sets the calling thread's slice to `micros`; nil when set, else why not.
    static func request(micros: Int) -> String? {
        let rc = cuffd_set_slice(UInt64(micros) * 1000)
        guard rc != 0 else { return nil }
        return "cannot set the loop's scheduler slice to \(micros) µs (\(String(cString: strerror(-rc))); "
            + "custom slices need Linux 6.12 or later): it keeps the default"
    }
}
