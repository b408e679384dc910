@testable import MigrateAgent
import Testing

/// When the destination hands background runs to its installer thread
/// (`--install-thread`): by default only while the guest faults.
struct InstallThreadUseTests {
    let now: UInt64 = 5_000_000_000

    @Test("auto hands off within the window after a fault, not after it or before any fault")
    func whileFaulting() {
        let use = InstallThreadUse.whileFaulting
        #expect(!use.handsOff(now: now, lastFault: 0), "no fault read yet: the loop installs")
        #expect(use.handsOff(now: now, lastFault: now - 1_000))
        #expect(use.handsOff(now: now, lastFault: now - Tuning.installerHandOffNanos + 1))
        #expect(!use.handsOff(now: now, lastFault: now - Tuning.installerHandOffNanos))
    }

    @Test("a fault read after the run's read time (a drain mid-frame) counts as now, not as long ago")
    func faultAfterTheRead() {
        // An unsigned difference would wrap around to a huge age here.
        #expect(InstallThreadUse.whileFaulting.handsOff(now: now, lastFault: now + 20_000))
        #expect(InstallThreadUse.whileFaulting.handsOff(now: now, lastFault: now))
    }

    @Test("always and never ignore the faults")
    func fixed() {
        for last in [0, now - 1_000, now - 2 * Tuning.installerHandOffNanos, now + 1] {
            #expect(InstallThreadUse.always.handsOff(now: now, lastFault: last))
            #expect(!InstallThreadUse.never.handsOff(now: now, lastFault: last))
        }
    }
}
