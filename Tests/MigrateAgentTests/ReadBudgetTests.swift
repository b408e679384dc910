import MigrateAgent
import Testing
import Wire

/// A connection's read budget over real TCP on 127.0.0.1: no loop turn takes
/// more than its budget (plus the frame a read completes), and a stream held
/// back turn by turn still delivers every frame, in order, without stalling.
struct ReadBudgetTests {
    @Test func eachTurnReadsAtMostItsBudgetAndEveryFrameArrives() throws {
        let pageSize = 4096
        let frames = 256  // about 1 MiB: 64 turns or more at a 16 KiB budget
        let budget = 16 * 1024
        let limits = FrameLimits.session(pageSize: pageSize, pageCount: UInt64(frames))
        let loop = try EventLoop()

        var bytesByTurn: [UInt64: Int] = [:]
        var received = 0
        var outOfOrder = 0
        var failure: String?
        var server: TCPConnection?
        var client: TCPConnection?
        var listener: TCPListener?
        var deadline: LoopTimer?
        var ended = false

        func end(_ why: String?) {
            guard !ended else { return }  // closing below calls onClose again
            ended = true
            failure = why
            deadline?.close()
            listener?.close()
            server?.close()
            client?.close()
            deadline = nil
            listener = nil
            loop.shutdown()
        }

        listener = try TCPListener(loop: loop, address: SocketAddress(host: "127.0.0.1", port: 0), limits: limits) { accepted in
            server = accepted
            accepted.readBudget = budget
            accepted.onFrame = { frame in
                bytesByTurn[loop.turn, default: 0] += frame.size
                if frame.header.arg != UInt64(received) || frame.payload.first != UInt8(truncatingIfNeeded: received) {
                    outOfOrder += 1
                }
                received += 1
                if received == frames { end(nil) }
            }
            accepted.onClose = { reason in end("the receiving side closed early: \(reason)") }
            accepted.startReading()
        }
        deadline = LoopTimer(loop: loop, everyMillis: 10_000) {
            end("timed out with \(received) of \(frames) frames received")
        }
        let address = listener!.address
        client = TCPConnection.connect(loop: loop, to: address, name: "sender", limits: limits) { connection, error in
            if let error { return end("connect: \(error)") }
            for i in 0..<frames {
                var page = [UInt8](repeating: 0, count: pageSize)
                page[0] = UInt8(truncatingIfNeeded: i)
                connection.send(.pages(first: UInt64(i), count: 1, flags: [], bytes: page))
            }
            connection.flush()
        }
        loop.run()

        #expect(failure == nil, "\(failure ?? "")")
        #expect(received == frames)
        #expect(outOfOrder == 0)
        let largestTurn = bytesByTurn.values.max() ?? 0
        #expect(largestTurn <= budget + pageSize + 64, "a turn handed out \(largestTurn) bytes of frames against a budget of \(budget)")
        #expect(bytesByTurn.count >= frames * pageSize / (budget + pageSize), "the budget spread \(frames) frames over only \(bytesByTurn.count) turns")
    }
}
