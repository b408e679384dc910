import Dispatch
import MigrateAgent

/// Check 6, release: threads blocked on faults nobody resolves — one on a
/// protected page, one on an absent page — are freed by `backend.release()`
/// (`UFFDIO_UNREGISTER`, the shutdown path every other check falls back on).
/// Once released, the protected page shows the held copy (or zeros where the
/// backend dropped it) and the absent page zeros.
struct ReleaseCheck {
    let context: CheckContext

    private let protectedPage = 0
    private let absentPage = 1
    private let version: UInt32 = 1
    /// How long a thread with an unresolved fault must stay blocked before the release.
    private static let blockedProof = DispatchTimeInterval.milliseconds(100)

    func run(_ findings: inout Findings) throws(AgentError) -> String {
        let backend = try context.makeBackend(pages: 2, for: .release)
        defer { backend.release() }
        let arena = backend.arena
        arena.fillThroughIOView(page: protectedPage, version: version)
        let page = protectedPage..<(protectedPage + 1)
        guard try context.activate(page, on: backend, findings: &findings),
              try context.protect(page, on: backend, findings: &findings) else { return "" }

        let afterRelease: ExpectedContent = context.keepsHeldCopy ? .version(version) : .zeros
        let guests = context.guests(for: .release, plans: [
            [GuestTouch(page: protectedPage, access: .read, expected: afterRelease)],
            [GuestTouch(page: absentPage, access: .write, expected: .zeros)],
        ], arena: arena)
        let reader = FaultReader(backend: backend)
        guests.start()

        // Both threads are blocked once both fault messages are there; nobody resolves them.
        var faults: [PageFault] = []
        let faultDeadline = context.deadline()
        while Set(faults.compactMap(\.page)) != [protectedPage, absentPage] && DispatchTime.now() < faultDeadline {
            do { faults += try reader.read(until: faultDeadline) } catch {
                findings.add(error.description)
                break
            }
        }
        findings.expect(Set(faults.compactMap(\.page)) == [protectedPage, absentPage],
                        "expected faults on pages 0 and 1 within \(context.timeoutSeconds) s, got \(faults.map(\.pageText))")
        for fault in faults {
            let expected: FaultKind = fault.page == protectedPage ? context.flags.protectedKind : .missing
            let kind = backend.classify(flags: fault.flags)
            findings.expect(kind == expected, "\(fault.pageText): classify(\(fault.flagsText)) is \(kind), expected \(expected)")
        }
        findings.expect(!guests.wait(until: .now() + Self.blockedProof),
                        "a guest thread finished although its fault was never resolved")

        backend.release()
        backend.release()  // idempotent: the shutdown path may run twice
        guard guests.wait(until: context.deadline()) else {
            findings.add("guest threads \(guests.unfinished.joined(separator: ", ")) still blocked "
                + "\(context.timeoutSeconds) s after release()")
            return ""
        }
        findings.add(contentsOf: guests.problems)
        do {
            let late = try reader.readPending()
            findings.expect(late.isEmpty, "faults after release: \(late.map(\.pageText))")
        } catch {
            findings.add(error.description)
        }
        return "release() freed 2 threads blocked on unresolved faults; the protected page then held "
            + "\(afterRelease), the absent one an all-zero page"
    }
}
