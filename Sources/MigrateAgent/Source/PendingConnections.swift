import Wire

/// Connections the source accepted that have not yet proven the key and said
/// hello. A hostile or broken client must not be able to hold the source: each
/// gets `deadlineSeconds` to finish its handshake, at most `capacity` wait at
/// once (more are closed on accept), and all are closed when the source ends.
/// Receive buffers are small until a connection joins the session.
///
/// Threading: the source's loop thread only (asserted in debug builds).
final class PendingConnections {
    final class Entry {
        let connection: TCPConnection
        let auth: ConnectionAuth
        let acceptedNanos = EventLoop.nowNanos()
        init(connection: TCPConnection, auth: ConnectionAuth) {
            self.connection = connection
            self.auth = auth
        }
    }

    private let loop: EventLoop
    private let capacity: Int
    private let deadlineNanos: UInt64
    private var entries: [ObjectIdentifier: Entry] = [:]
    /// Connections refused so far (no proof, too slow, too many), for the report.
    private(set) var refused = 0

    init(loop: EventLoop, capacity: Int, deadlineSeconds: Double) {
        self.loop = loop
        self.capacity = capacity
        deadlineNanos = UInt64(deadlineSeconds * 1e9)
    }

    /// Admits a new connection, or closes it when too many are waiting.
    func admit(_ connection: TCPConnection, key: PresharedKey?, encrypt: Bool = false) -> Entry? {
        loop.assertOnLoop()
        guard entries.count < capacity else {
            refused += 1
            connection.close()
            return nil
        }
        let entry = Entry(connection: connection, auth: ConnectionAuth(key: key, role: .source, encrypt: encrypt))
        entries[ObjectIdentifier(connection)] = entry
        return entry
    }

    /// The connection joined the session, or closed: it no longer waits.
    func remove(_ connection: TCPConnection) {
        loop.assertOnLoop()
        entries[ObjectIdentifier(connection)] = nil
    }

    /// Refuses a waiting connection with `code` and the reason.
    func refuse(_ connection: TCPConnection, _ code: WireErrorCode, _ reason: String) {
        loop.assertOnLoop()
        remove(connection)
        refused += 1
        connection.fail(code, reason)
    }

    /// Closes every connection whose handshake took longer than the deadline; returns how many.
    func expire(now: UInt64) -> Int {
        loop.assertOnLoop()
        let late = entries.values.filter { now - $0.acceptedNanos > deadlineNanos }
        for entry in late {
            refuse(entry.connection, .peerTimeout, "no key proof and hello within \(Double(deadlineNanos) / 1e9) s")
        }
        return late.count
    }

    /// Closes every waiting connection (the source is ending).
    func closeAll() {
        loop.assertOnLoop()
        for entry in entries.values { entry.connection.close() }
        entries.removeAll()
    }
}
