@testable import MigrateAgent
import Testing

/// The fault clock's bookkeeping: a table of the faults in flight that stays
/// bounded, and 4-byte stamps whose differences survive wrapping. Plain data
/// structures, tested without a kernel.
struct FaultPhaseClockTests {
    @Test func inFlightTableKeepsEachFaultUntilRemoved() {
        var table = InFlightFaults(capacity: 64)
        // Neighbouring pages, as a sequential guest faults them, and pages far apart.
        let pages = Array(1000..<1020) + [0, 1 << 20, 7, 123_456_789]
        for (i, page) in pages.enumerated() { table.insert(page, read: UInt64(100 + i)) }
        #expect(table.count == pages.count)
        table.written(1005, at: 500)
        table.written(1005, at: 900)  // only the first hand-over counts
        #expect(table.remove(1005) == .init(read: 105, written: 500))
        #expect(table.remove(1005) == nil)
        // Every other entry is still found after the removals shifted their runs back.
        for (i, page) in pages.enumerated() where page != 1005 {
            #expect(table.remove(page) == .init(read: UInt64(100 + i), written: 0), "page \(page)")
        }
        #expect(table.count == 0)
        #expect(table.remove(7) == nil)
    }

    @Test func aFaultReadAgainRestartsItsClock() {
        var table = InFlightFaults(capacity: 8)
        table.insert(3, read: 10)
        table.written(3, at: 11)
        table.insert(3, read: 20)
        #expect(table.count == 1)
        #expect(table.remove(3) == .init(read: 20, written: 0))
    }

    @Test func aFullTableCountsFaultsItCannotHold() {
        var table = InFlightFaults(capacity: 8)
        for page in 0..<20 { table.insert(page * 4096, read: 1) }
        #expect(table.count == table.capacity)
        #expect(table.unmeasured == 20 - table.capacity)
        // The ones it holds are intact, and a freed slot takes a new fault.
        #expect(table.remove(0) != nil)
        table.insert(99, read: 2)
        #expect(table.remove(99) == .init(read: 2, written: 0))
    }

    @Test func removalsInAnyOrderAgreeWithADictionary() {
        var table = InFlightFaults(capacity: 256)
        var model: [Int: UInt64] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            let page = Int.random(in: 0..<400, using: &rng)
            if model[page] == nil, model.count < table.capacity, Bool.random(using: &rng) {
                table.insert(page, read: UInt64(step + 1))
                model[page] = UInt64(step + 1)
            } else {
                let expected = model.removeValue(forKey: page)
                #expect(table.remove(page)?.read == expected, "step \(step), page \(page)")
            }
        }
        #expect(table.count == model.count)
    }

    @Test func touchTicksMeasureAcrossTheirWrap() {
        let wrap = UInt64(1) << (32 + TouchTick.shift)  // 68.7 s of nanoseconds
        let start = 5 * wrap - 1_000  // 1 µs before a wrap
        let d = TouchTick.elapsed(from: TouchTick.stamp(start), to: TouchTick.stamp(start + 40_000))
        #expect(d.map { $0 >= 39_984 && $0 <= 40_016 } == true, "\(String(describing: d))")
        #expect(TouchTick.elapsed(from: 0, to: TouchTick.stamp(start)) == nil)  // unstamped
        #expect(TouchTick.elapsed(from: TouchTick.stamp(start + 40_000), to: TouchTick.stamp(start)) == nil)  // backwards
        #expect(TouchTick.stamp(wrap) == 1)  // a stamp that truncates to 0 still reads as stamped
    }

    @Test func touchLogSplitsAFaultIntoDeliveryAndWakeUp() {
        let clock = FaultPhaseClock()
        let log = clock.makeTouchLog(threads: 2)
        #expect(clock.makeTouchLog(threads: 2) === log)
        log.started(thread: 1, page: 9, at: 1_000_000)
        clock.requested(9, at: 1_008_000)
        clock.flushed(at: 1_010_000)
        clock.resolved(9, received: 1_050_000, resolved: 1_052_000)
        log.ended(thread: 1, page: 9, at: 1_060_000)
        clock.collectWakeUps()
        let s = clock.summary
        #expect(s.delivered.count == 1 && abs(s.delivered.p50 - 8) < 0.2)
        #expect(s.requestWritten.count == 1 && abs(s.requestWritten.p50 - 2) < 0.1)
        #expect(s.pageReceived.count == 1 && abs(s.pageReceived.p50 - 40) < 0.5)
        #expect(s.woken.count == 1 && abs(s.woken.p50 - 8) < 0.2)
        #expect(s.total.count == 1 && abs(s.total.p50 - 44) < 0.5)
        #expect(s.unmeasured == nil)
        // A page resolved without a fault in flight (the stream's) adds nothing.
        clock.resolved(3, received: 1, resolved: 2)
        #expect(clock.summary.total.count == 1)
    }

    @Test func touchLogCountsEachWakeUpOnceWhenItsThreadFaultsAgain() {
        let clock = FaultPhaseClock()
        let log = clock.makeTouchLog(threads: 2)
        clock.requested(0, at: 500)  // no thread began an access of page 0: an empty slot is not page 0
        #expect(clock.summary.delivered.count == 0)
        // Thread 0 faults on page 4, is resolved at 20 µs and resumes at 23 µs.
        log.started(thread: 0, page: 4, at: 10_000)
        clock.requested(4, at: 12_000)
        clock.resolved(4, received: 19_000, resolved: 20_000)
        log.ended(thread: 0, page: 4, at: 23_000)
        // Thread 1 faults meanwhile: its slot is its own.
        log.started(thread: 1, page: 5, at: 21_000)
        clock.requested(5, at: 22_000)
        #expect(clock.summary.woken.count == 0)
        // Thread 0's next fault shows that it ran on: its wake-up is counted then, once.
        log.started(thread: 0, page: 6, at: 30_000)
        clock.requested(6, at: 31_000)
        var s = clock.summary
        #expect(s.delivered.count == 3 && s.woken.count == 1 && abs(s.woken.p50 - 3) < 0.1)
        clock.requested(6, at: 32_000)  // the same fault read again
        #expect(clock.summary.woken.count == 1)
        // Thread 1 is resolved but its access has not returned by the join: no wake-up from it.
        clock.resolved(5, received: 40_000, resolved: 41_000)
        clock.resolved(6, received: 40_000, resolved: 42_000)
        log.ended(thread: 0, page: 6, at: 50_000)
        clock.collectWakeUps()
        s = clock.summary
        #expect(s.woken.count == 2 && abs(s.woken.max - 8) < 0.1)
    }
}
