import Dispatch
import FoundationEssentials
import Glibc

/// The destination's counters and demand-latency histogram as a Prometheus text
/// file, rewritten whole (a temporary file renamed over it) so that a reader
/// never sees half of it: node_exporter's textfile-collector convention.
///
/// Hand-written exposition on purpose: the histogram comes from the log2
/// counters the fault path keeps without locks, and a metrics library's
/// histogram would take a lock on every fault.
/// Threading: its owner's thread (the destination's loop, once a second).
struct MetricsFile {
    let path: String

    /// Writes `report` (and `log2Micros`, the fault latency buckets); throws what went wrong.
    func write(_ report: DestinationReport, log2Micros: [UInt64]) throws(AgentError) {
        let text = Self.text(report, log2Micros: log2Micros)
        let temporary = path + ".tmp"
        do {
            try text.write(toFile: temporary, atomically: false, encoding: .utf8)
            if rename(temporary, path) != 0 { throw AgentError.system("rename to \(path): \(String(cString: strerror(errno)))") }
        } catch {
            throw .system("cannot write the metrics file \(path): \(error)")
        }
    }

    static func text(_ r: DestinationReport, log2Micros: [UInt64]) -> String {
        var lines: [String] = []
        func metric(_ name: String, _ type: String, _ help: String, _ value: Int) {
            lines += ["# HELP migrate_agent_\(name) \(help)", "# TYPE migrate_agent_\(name) \(type)", "migrate_agent_\(name) \(value)"]
        }
        metric("pages", "gauge", "Pages of guest memory.", r.pageCount)
        metric("pages_missing", "gauge", "Pages not received yet.", r.pagesMissing)
        metric("demand_pages_total", "counter", "Pages received as answers to guest faults.", r.demandPages)
        metric("background_pages_total", "counter", "Pages received from the background stream.", r.backgroundPages)
        metric("fault_messages_total", "counter", "Page-fault messages read from the userfaultfd.", r.faultMessages)
        metric("zero_pages_total", "counter", "Faults on given-back pages answered with a zero page.", r.zeroPages)
        metric("removed_ranges_total", "counter", "Ranges the guest gave back (UFFD_EVENT_REMOVE).", r.removedRanges)
        metric("deferred_installs_total", "counter", "Installs deferred by an unread userfaultfd event (EAGAIN).", r.deferredInstalls)
        metric("resumes_total", "counter", "Sessions resumed after a dropped connection.", r.resumes)
        metric("bytes_received_total", "counter", "Page bytes received.", (r.demandPages + r.backgroundPages) * r.pageSize)
        // Bucket i counts [2^i, 2^(i+1)) µs: its upper bound 2^(i+1) µs, in seconds, is the `le` label.
        let name = "migrate_agent_demand_fault_seconds"
        lines += ["# HELP \(name) Demand-fault latency on the destination's loop, fault read until resolved.",
                  "# TYPE \(name) histogram"]
        var cumulative: UInt64 = 0
        var sum = 0.0
        for (i, count) in log2Micros.enumerated() {
            cumulative += count
            let upper = Double(UInt64(1) << (i + 1)) / 1e6
            sum += Double(count) * upper * 0.75  // a bucket's midpoint, 3/4 of its upper bound
            lines.append("\(name)_bucket{le=\"\(upper)\"} \(cumulative)")
        }
        lines += ["\(name)_bucket{le=\"+Inf\"} \(cumulative)", "\(name)_sum \(sum)", "\(name)_count \(cumulative)"]
        return lines.joined(separator: "\n") + "\n"
    }
}
