import Foundation
import MigrateAgent
import Testing

// Guest memory is touched only from threads these tests create, never from the
// Swift Testing pool: a fault nobody resolves blocks its thread in the kernel
// for good (SWIFT-NOTES.md, "Tests that touch protected memory"). Every wait has
// a deadline; on a deadline the arena is unregistered, so the blocked threads
// wake up and the test fails with a message instead of hanging.

/// The library's deadline-joined thread, under the name these tests use.
typealias GuestThread = DeadlineThread

/// Lets guest threads start their accesses together (so faults on a shared page overlap).
final class StartGate: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let count: Int
    init(count: Int) { self.count = count }
    /// Called by each guest thread; gives up after `seconds` (the test then fails on its own deadline).
    func wait(seconds: Double = 10) { _ = semaphore.wait(timeout: .now() + seconds) }
    func open() { for _ in 0..<count { semaphore.signal() } }
}

/// Joins every thread by one deadline. On the deadline: releases the backend
/// (UFFDIO_UNREGISTER wakes the blocked threads), records an issue naming the
/// stuck threads, and returns nil.
func joinGuests<R>(
    _ threads: [GuestThread<R>], within seconds: Double = 10, releasing backend: any ProtectionBackend,
    sourceLocation: SourceLocation = #_sourceLocation
) -> [R]? {
    let deadline = DispatchTime.now() + seconds
    let stuck = threads.filter { $0.join(until: deadline) == nil }.map(\.name)
    if stuck.isEmpty { return threads.map { $0.join(until: deadline)! } }
    backend.release()
    let grace = DispatchTime.now() + 5
    let stillStuck = threads.filter { $0.join(until: grace) == nil }.map(\.name)
    let message = "guest threads \(stuck) were still blocked after \(seconds) s (a fault nobody resolved); "
            + "released the arena with UFFDIO_UNREGISTER"
            + (stillStuck.isEmpty ? "" : "; even then still stuck: \(stillStuck)")
    Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    return nil
}

/// How a guest thread touches one page.
enum Access: String, Sendable {
    case read, write
}

/// Touches `page` of the guest view the way a vCPU would, then checks every
/// word of it (`PageContent.verify` reads the whole page and its result is
/// used, so the optimiser cannot drop the access). A write stores the page's
/// own index into word 0, a value every version of the page holds, so the
/// first touch is a real write and the page must still verify afterwards.
/// Returns nil when the page holds page `page` at `version`, else what it held.
func touch(_ arena: Arena, page: Int, _ access: Access, expecting version: UInt32) -> String? {
    let address = arena.guestPage(page)
    if access == .write { address.storeBytes(of: UInt64(page), as: UInt64.self) }
    if PageContent.verify(address, index: page, version: version, pageSize: arena.pageSize) { return nil }
    return "\(access) of page \(page): expected version \(version), found "
        + PageContent.describe(address, pageSize: arena.pageSize)
}
