import Dispatch
import MigrateAgent

/// Runs one set of guest threads to the end while the calling thread resolves
/// their faults: the self-test's stand-in for the destination's event loop.
/// The calling thread only reads the userfaultfd and calls the backend; it
/// never touches guest memory.
///
/// No wait is unbounded. When the guest threads are not done by the deadline,
/// or a fault cannot be resolved, the backend is released (`UFFDIO_UNREGISTER`)
/// so that every blocked thread wakes up, and the problem is recorded.
struct ResolvingRun {
    /// What the run saw.
    struct Record {
        /// Every page fault read, in order.
        var faults: [PageFault] = []
        /// Whether the run had to release the backend (the check has failed; later expectations are moot).
        var released = false
    }

    let backend: any ProtectionBackend
    let timeoutSeconds: Double
    /// How long the threads get to finish after a release.
    private static let graceSeconds = 5.0
    /// How often the loop looks whether the guest threads are done while no fault arrives.
    private static let slice = DispatchTimeInterval.milliseconds(10)

    /// Starts `guests` and hands each page fault to `resolve` until they have
    /// all finished. Problems (a deadline, a failed resolution, what the guest
    /// threads saw, what `resolve` noticed) go to `findings`.
    func run(_ guests: GuestThreadGroup, findings: inout Findings,
             resolve: (PageFault, inout Findings) throws -> Void) -> Record {
        let reader = FaultReader(backend: backend)
        let deadline = DispatchTime.now() + timeoutSeconds
        var record = Record()

        func release(because problem: String) {
            findings.add(problem)
            backend.release()
            record.released = true
        }
        func handle(_ batch: [PageFault]) {
            for fault in batch {
                record.faults.append(fault)
                guard !record.released else { continue }
                do { try resolve(fault, &findings) } catch {
                    release(because: "resolving the fault on \(fault.pageText) (flags \(fault.flagsText)): \(error); "
                        + "released the arena")
                }
            }
        }

        guests.start()
        while !guests.hasFinished {
            let now = DispatchTime.now()
            guard now < deadline else {
                release(because: "guest threads \(guests.unfinished.joined(separator: ", ")) still blocked after "
                    + "\(timeoutSeconds) s (a fault nobody resolved); released the arena with UFFDIO_UNREGISTER")
                if !guests.wait(until: .now() + Self.graceSeconds) {
                    findings.add("even after the release, still stuck: \(guests.unfinished.joined(separator: ", "))")
                    return record
                }
                break
            }
            do {
                handle(try reader.read(until: min(deadline, now + Self.slice)))
            } catch {
                release(because: "\(error); released the arena")
            }
        }
        // Messages still queued come from threads that a resolution of the same
        // page already woke (late duplicates): hand them over for the books.
        if !record.released {
            do { handle(try reader.readPending()) } catch { findings.add(error.description) }
        }
        findings.add(contentsOf: guests.problems)
        return record
    }
}
