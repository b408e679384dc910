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

    /// Maps every page pre-copy delivered and protects the stale ones. Returns the
    /// number of pages protected.
    static func apply(tracker: PageTracker, backend: any ProtectionBackend) throws(AgentError) -> Int {
        try tracker.forEachRun(where: { $0 != .absent }) { (first, count) throws(AgentError) in
            try backend.activate(first: first, count: count)
        }
        try tracker.forEachRun(where: { $0 == .stale }) { (first, count) throws(AgentError) in
            try backend.protect(first: first, count: count)
        }
        return tracker.staleCount
    }
}
