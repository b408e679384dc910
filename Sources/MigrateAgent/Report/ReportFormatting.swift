import Dispatch
import FoundationEssentials
import Glibc

/// JSON and human-readable renderings of the reports.
public enum ReportFormatting {
    public static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    public static func write<T: Encodable>(_ value: T, toFile path: String) throws(AgentError) {
        do {
            try Data(json(value).utf8).write(to: URL(fileURLWithPath: path))
        } catch {
            throw .system("cannot write the report to \(path): \(error.reasonText)")
        }
    }

    /// Throws, naming `path`, unless a file can be written there: its directory
    /// exists and is writable, and the path is not a directory or a read-only
    /// file. Agents call it before the migration starts, so that a report path
    /// that cannot work is refused before any memory moves.
    public static func checkWritable(_ path: String, what: String = "the report") throws(AgentError) {
        let directory = parentDirectory(of: path)
        func refuse(_ reason: String) -> AgentError { .invalidArgument("cannot write \(what) to \(path): \(reason)") }
        var info = stat()
        guard stat(directory, &info) == 0 else {
            throw refuse(errno == ENOENT ? "the directory \(directory) does not exist"
                : "the directory \(directory): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw refuse("\(directory) is not a directory") }
        guard access(directory, W_OK | X_OK) == 0 else {
            throw refuse("the directory \(directory) is not writable (\(String(cString: strerror(errno))))")
        }
        guard stat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT != S_IFDIR else { throw refuse("it is a directory") }
        guard access(path, W_OK) == 0 else { throw refuse("the file is not writable (\(String(cString: strerror(errno))))") }
    }

    /// The directory a file path is in: "." for a bare name, "/" for "/name".
    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    public static func read<T: Decodable>(_ type: T.Type, fromFile path: String) -> T? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(type, from: data)
    }

    /// The name of a Linux signal number: 9 is "SIGKILL", 34 "SIGRTMIN", 36 "SIGRTMIN+2".
    public static func signalName(_ number: Int32) -> String {
        let names = ["HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
                     "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
                     "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS"]
        switch number {
        case 1...Int32(names.count): return "SIG" + names[Int(number) - 1]
        case 34: return "SIGRTMIN"
        case 35...64: return "SIGRTMIN+\(number - 34)"
        default: return "unknown signal"
        }
    }

    /// A latency summary as one line of text ("none measured" when empty), for the demo's report.
    public static func micros(_ s: LatencySummary?) -> String {
        guard let s, s.count > 0 else { return "none measured" }
        return String(format: "p50 %.1f µs, p99 %.1f µs, max %.1f µs (%llu faults)", s.p50, s.p99, s.max, s.count)
    }

    /// ", CPU 0.41 s user + 0.22 s system", or "" when not measured.
    static func cpu(_ c: ProcessCPU?) -> String {
        guard let c else { return "" }
        return String(format: ", CPU %.2f s user + %.2f s system", c.userSeconds, c.systemSeconds)
    }

    public static func text(_ r: DestinationReport) -> String {
        var lines = [
            "destination: \(r.succeeded ? "migration complete" : "migration FAILED")",
            "  backend            \(r.backend.rawValue)",
            "  authentication     \(r.authentication)",
            "  arena              \(ByteSize(bytes: r.arenaBytes)) (\(r.pageCount) pages of \(r.pageSize) bytes)"
                + (r.preallocateMillis.map { String(format: ", allocated in %.0f ms before connecting", $0) } ?? ""),
            "  pages on demand    \(r.demandPages)",
            "  pages in background \(r.backgroundPages) (\(r.backgroundPagesOnInstallerThread) installed on the installer thread)",
            "  zero pages         \(r.zeroPagesReceived) arrived as all-zero runs (no bytes sent)",
            "  faults             \(r.missingFaults) missing, \(r.staleFaults) stale; \(r.unchangedPages) stale pages unchanged, \(r.refreshedPages) refreshed",
            "  fault latency      \(r.guest == nil && r.faultLatencyMicros == nil ? "measured by the guest; none ran here (loop-side below)" : micros(r.faultLatencyMicros))",
            "  elapsed            \(String(format: "%.3f", r.elapsedSeconds)) s" + cpu(r.cpuDuringMigration)
                + (r.guestCPUSecondsDuringMigration.map { String(format: " (the guest's threads %.2f s of it)", $0) } ?? ""),
            "  switch-over        \(r.precopyPages) pages pre-copied, \(r.pagesProtectedAtSwitchover) protected, applied in \(String(format: "%.2f", r.switchoverApplyMillis)) ms; \(r.pagesMappedAfterSwitchover) mapped while the guest ran",
            "  digest match       \(r.digestMatch ? "yes" : "no")",
        ]
        if r.hotSetPages > 0 {
            lines.append("  hot set            \(r.hotSetPages) pages, \(r.hotSetDemandFaults) faulted on demand, "
                + (r.hotSetResidentMillis.map { "all resident \(String(format: "%.1f", $0)) ms after switch-over, "
                    + "with \(r.hotSetResidentWithPages ?? 0) pages here" } ?? "not all resident"))
        }
        if let g = r.guest {
            lines.append("  guest              \(g.threads) threads, \(g.pattern), \(g.accesses) accesses, \(g.writes) writes, \(g.mismatches) wrong pages")
        }
        if let m = r.memory, r.vmmPID != nil {
            // The guest's memory is the VMM's: all of this process's memory is its own.
            lines.append(String(format: "  memory             PSS %.1f MiB, RSS %.1f MiB (the guest's memory is the VMM's)",
                                Double(m.pssBytes) / 1048576, Double(m.rssBytes) / 1048576))
        } else if let m = r.memory {
            lines.append(String(format: "  memory             PSS %.1f MiB (%.1f MiB beyond the arena), RSS %.1f MiB (the arena's two views counted twice)",
                                Double(m.pssBytes) / 1048576, Double(m.pssBytes - r.arenaBytes) / 1048576, Double(m.rssBytes) / 1048576))
        }
        if let pid = r.vmmPID {
            lines.append("  VMM                pid \(pid), \(r.vmmRegions ?? 0) regions\(r.vmmExited ? ", exited" : "")\(r.vmmKilled ? ", killed" : "")")
            lines.append("  given back         \(r.removedRanges) ranges (\(r.removedPages) pages not yet here), \(r.zeroPages) zero pages, \(r.deferredInstalls) deferred installs")
        }
        if let buckets = r.demandLatencyLog2Micros, let last = buckets.lastIndex(where: { $0 > 0 }) {
            let shown = (0...last).map { "<\(1 << ($0 + 1)):\(buckets[$0])" }.joined(separator: " ")
            lines.append("  loop latency µs    \(shown)")
        }
        if let kept = r.staleKeptPages { lines.append("  STALE DATA KEPT    \(kept) pages released with RWP_ASYNC (--keep-stale-on-failure)") }
        if let w = r.warning { lines.append("  warning            \(w)") }
        if let e = r.error { lines.append("  error              \(e)") }
        return lines.joined(separator: "\n")
    }

    public static func text(_ r: SourceReport) -> String {
        var lines = [
            "source: \(r.succeeded ? "migration complete" : "migration FAILED")",
            "  arena              \(ByteSize(bytes: r.arenaBytes)) (\(r.pageCount) pages)",
            "  authentication     \(r.authentication); \(r.refusedConnections) connections refused",
            "  demand requests    \(r.demandRequests) (\(r.demandPagesSent) pages)",
            "  background pages   \(r.backgroundPagesSent) (\(r.zeroPagesSent) of the streamed pages were all zero: sent without their bytes)",
            "  guest writes       \(r.guestPagesWritten) pages before switch-over",
            "  switch-over        \(r.staleAtSwitchover) stale pages, guest paused \(String(format: "%.2f", r.pauseToSwitchoverMillis)) ms until sent; \(r.unchangedAnswers) answered unchanged",
            "  elapsed            \(String(format: "%.3f", r.elapsedSeconds)) s" + cpu(r.cpuDuringMigration),
        ]
        if let w = r.workingSet {
            var line = "  access tracking    \(w.method), \(String(format: "%.1f", w.seconds)) s in \(w.intervalMillis) ms intervals"
            if w.method != "off" {
                line += "; working set ~\(w.estimatedWorkingSetPages) pages, hot set \(w.hotSetPages)"
                if let recall = w.recall, let precision = w.precision { line += String(format: ", recall %.2f, precision %.2f", recall, precision) }
                if let c = w.costs { line += "; \(c.faults) tracker faults" }
            }
            if let rate = w.guestAccessesPerSecond { line += String(format: "; guest %.0f accesses/s", rate) }
            lines.append(line)
            if !w.pagesAccessedPerInterval.isEmpty {
                lines.append("  accessed/interval  " + w.pagesAccessedPerInterval.map(String.init).joined(separator: " "))
            }
        }
        if r.streamHeadPages > 0 {
            lines.append("  stream head        \(r.streamHeadPages) pages first, \(r.streamHeadPagesSent) of them by the stream (the rest on demand)")
        }
        for round in r.precopyRounds {
            lines.append("  pre-copy round \(round.round)   \(round.pagesSent) pages sent, \(round.pagesDirtied) dirtied (\(r.dirtyTracking ?? "?"))")
        }
        if let file = r.prefetchTraceFile {
            lines.append("  prefetch trace     \(r.tracePagesPrefetched ?? 0) pages first from \(file); \(r.demandPagesPredicted ?? 0) of the "
                + "\(r.distinctDemandPages ?? 0) pages requested on demand were in it")
        }
        if let file = r.traceFile {
            lines.append("  trace recorded     \(r.tracePagesRecorded ?? 0) pages to \(file)\(r.tracePartial == true ? " (PARTIAL: the migration failed)" : "")")
        }
        if let e = r.error { lines.append("  error              \(e)") }
        return lines.joined(separator: "\n")
    }
}
