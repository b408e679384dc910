import MigrateAgent
import Testing

/// An arena larger than the machine is refused before anything is allocated, with both sizes named.
@Suite("memory budget")
struct MemoryBudgetTests {
    private let gib = 1 << 30

    private func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch AgentError.unsupported(let message) { return message } catch {
            Issue.record("expected AgentError.unsupported, got \(error)")
        }
        return nil
    }

    @Test("64 GiB on a machine with 24 GiB available is refused, naming both sizes and the limit")
    func tooLargeForMemory() throws {
        let budget = MemoryBudget(limits: [.init(kind: .memory, bytesLeft: 24 * gib, name: "MemAvailable in /proc/meminfo")])
        let text = try #require(message { try budget.check(arenaBytes: 64 * gib, pageSize: 4096) })
        #expect(text.contains("64 GiB") && text.contains("24.0 GiB") && text.contains("MemAvailable"), "\(text)")
        #expect(text.contains("64.5 GiB"), "the bookkeeping (32 bytes a page: 512 MiB) is counted: \(text)")
    }

    @Test("an arena that fits with its bookkeeping is accepted; one that fits only without it is not")
    func bookkeepingCounts() throws {
        let budget = MemoryBudget(limits: [.init(kind: .memory, bytesLeft: 8 * gib + (8 * gib / 4096) * MemoryBudget.bookkeepingBytesPerPage, name: "m")])
        try budget.check(arenaBytes: 8 * gib, pageSize: 4096)
        let tight = MemoryBudget(limits: [.init(kind: .memory, bytesLeft: 8 * gib, name: "m")])
        #expect(message { try tight.check(arenaBytes: 8 * gib, pageSize: 4096) } != nil)
    }

    @Test("two agents on one machine need two arenas of memory, but rlimits count one process")
    func copies() throws {
        let budget = MemoryBudget(limits: [
            .init(kind: .memory, bytesLeft: 3 * gib, name: "m"),
            .init(kind: .fileSize, bytesLeft: 2 * gib, name: "RLIMIT_FSIZE"),
        ])
        try budget.check(arenaBytes: gib, pageSize: 4096)
        let text = try #require(message { try budget.check(arenaBytes: 2 * gib, pageSize: 4096, copies: 2) })
        #expect(text.contains("2 arenas of 2 GiB"), "\(text)")
        try MemoryBudget(limits: [.init(kind: .fileSize, bytesLeft: 2 * gib, name: "f")])
            .check(arenaBytes: 2 * gib, pageSize: 4096, copies: 2)
    }

    @Test("the file-size and address-space limits: the memfd's size, and two views of it")
    func rlimits() throws {
        let fsize = MemoryBudget(limits: [.init(kind: .fileSize, bytesLeft: gib, name: "RLIMIT_FSIZE, ulimit -f")])
        let text = try #require(message { try fsize.check(arenaBytes: 2 * gib, pageSize: 4096) })
        #expect(text.contains("RLIMIT_FSIZE"), "\(text)")
        let space = MemoryBudget(limits: [.init(kind: .addressSpace, bytesLeft: 3 * gib, name: "RLIMIT_AS")])
        try space.check(arenaBytes: gib, pageSize: 4096)
        #expect(message { try space.check(arenaBytes: 2 * gib, pageSize: 4096) } != nil, "2 GiB mapped twice is 4 GiB")
    }

    @Test("this machine's budget reads MemAvailable, and Arena refuses an arena beyond it before allocating")
    func arenaChecks() throws {
        let budget = MemoryBudget.current()
        let memory = try #require(budget.limits.first { $0.name.contains("MemAvailable") })
        #expect(memory.bytesLeft > 0)
        // Far more than any machine holds: refused by the check, not by a failing mmap or the OOM killer.
        let text = try #require(message { _ = try Arena(size: 1 << 50, name: "too-large") })
        #expect(text.contains("1048576 GiB") && text.contains("cannot fit"), "\(text)")
    }

    @Test("sizes print approximately with one decimal")
    func approximate() {
        #expect(MemoryBudget.approximate(24 * gib + gib / 10) == "24.1 GiB")
        #expect(MemoryBudget.approximate(512 << 20) == "512.0 MiB")
        #expect(MemoryBudget.approximate(100) == "100 bytes")
    }
}
