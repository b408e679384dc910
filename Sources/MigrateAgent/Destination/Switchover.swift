/// Switch-over on the destination: the stale set marks pages the source wrote
/// after sending them, and when the guest's state arrives the pages pre-copy
/// delivered are mapped and the stale ones protected, before the guest runs.
///
/// Threading: the destination's loop thread only.
enum Switchover {
    /// Pages the source dirtied after sending them: protected at switch-over.
    static func markStale(_ pages: [UInt64], tracker: PageTracker) {
        for page in pages.lazy.map({ Int($0) }) where tracker.state(page) == .present {
            tracker.set(page, .stale)
        }
    }

    /// Protects the stale pages, and returns the runs of pre-copied pages still to be
    /// mapped (`activate`), which `HeldPageMapper` maps while the guest runs. Stale pages
    /// are never mapped here: they stay protected until refreshed. A backend that
    /// drops a stale copy to protect it (`missing`) drops its bytes: their hash
    /// leaves the digest first (`ReceivedHashes.forget`), while they are still here.
    static func apply(tracker: PageTracker, backend: any ProtectionBackend,
                      hashes: ReceivedHashes) throws(AgentError) -> [(first: Int, count: Int)] {
        try tracker.forEachRun(where: { $0 == .stale }) { (first, count) throws(AgentError) in
            if !backend.keepsStaleCopy { for page in first..<(first + count) { hashes.forget(page) } }
            try backend.protect(first: first, count: count)
        }
        var held: [(first: Int, count: Int)] = []
        if backend.mapsHeldPages {
            try tracker.forEachRun(where: { $0 == .present }) { held.append(($0, $1)) }
        }
        return held
    }
}
