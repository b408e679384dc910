@testable import MigrateAgent
import Testing

/// The bulk stream's pace beside demand pages: arithmetic only, no socket.
struct BulkPacerTests {
    @Test func theStreamGetsWhatDemandLeavesOfTheLimit() {
        let limit: UInt64 = 100_000_000
        #expect(BulkPacer.bulkRate(limit: limit, demandBytesPerSecond: 0) == limit)
        // Twice the room the demand took.
        #expect(BulkPacer.bulkRate(limit: limit, demandBytesPerSecond: 20_000_000) == 60_000_000)
        // Never below an eighth: the stream is what ends the migration.
        #expect(BulkPacer.bulkRate(limit: limit, demandBytesPerSecond: 45_000_000) == limit / 8)
        #expect(BulkPacer.bulkRate(limit: limit, demandBytesPerSecond: 1e12) == limit / 8)
    }
}
