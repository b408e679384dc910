@testable import MigrateAgent
import Testing

/// The bulk connection's read budget per loop turn: throttled while demand
/// requests are outstanding and for a while after, unless the guest reads what
/// the stream brings, or the throttle is off.
struct BackgroundFlowTests {
    @Test("requests throttle the stream until they are answered, and for a while after")
    func throttledDuringAndAfterDemand() throws {
        let loop = try EventLoop()
        let flow = BackgroundFlow(loop: loop, throttlesDuringDemand: true)
        #expect(flow.budget == Tuning.bulkReadBudget)
        flow.demandSent()
        #expect(flow.budget == Tuning.bulkReadBudgetDuringDemand)
        flow.demandActivity(waitingOnStream: false, at: EventLoop.nowNanos())
        flow.demandAnswered()
        #expect(flow.budget == Tuning.bulkReadBudgetDuringDemand, "the window after the last answer")
        // Activity longer ago than the window: the stream is read at full speed.
        flow.demandActivity(waitingOnStream: false, at: EventLoop.nowNanos() - 2 * Tuning.bulkThrottleAfterDemandNanos)
        #expect(flow.budget == Tuning.bulkReadBudget)
    }

    @Test("a guest that reads what the stream brings is not throttled after its requests")
    func notAfterFaultsOnTheStream() throws {
        let loop = try EventLoop()
        let flow = BackgroundFlow(loop: loop, throttlesDuringDemand: true)
        flow.demandSent()
        flow.demandActivity(waitingOnStream: true, at: EventLoop.nowNanos())
        #expect(flow.budget == Tuning.bulkReadBudgetDuringDemand, "still throttled while the request is out")
        flow.demandAnswered()
        #expect(flow.budget == Tuning.bulkReadBudget)
    }

    @Test("without the hold (--no-yield-to-demand) or the throttle, nothing outlasts the requests")
    func optionsTurnItOff() throws {
        let loop = try EventLoop()
        let noHold = BackgroundFlow(loop: loop, throttlesDuringDemand: true, holdsAfterDemand: false)
        noHold.demandSent()
        noHold.demandActivity(waitingOnStream: false, at: EventLoop.nowNanos())
        noHold.demandAnswered()
        #expect(noHold.budget == Tuning.bulkReadBudget)
        let noThrottle = BackgroundFlow(loop: loop, throttlesDuringDemand: false)
        noThrottle.demandSent()
        #expect(noThrottle.budget == Tuning.bulkReadBudget)
    }

    @Test("the installer's room bounds reading only while runs go to it")
    func installerRoom() throws {
        let loop = try EventLoop()
        let flow = BackgroundFlow(loop: loop, throttlesDuringDemand: true)
        flow.installer(free: 64 * 1024, resumeAt: 512 * 1024)
        #expect(flow.budget == 64 * 1024)
        flow.installer(free: 0, resumeAt: 512 * 1024)
        #expect(flow.isWaitingForInstaller)
        flow.installerUnused()  // the guest stopped faulting: the loop installs what it reads
        #expect(!flow.isWaitingForInstaller)
        #expect(flow.budget == Tuning.bulkReadBudget)
    }
}
