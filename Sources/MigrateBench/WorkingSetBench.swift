import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent

/// Issue 10's figures (`bench --working-set SIZE`): a hot-set guest tracked on
/// the source during a warm-up, then migrated hot-first and in address order;
/// and the same guest warmed up unthrottled with and without tracking, for the
/// tracker's cost. Value types; built on the benchmark's controlling thread.
public struct WorkingSetResult: Codable, Sendable {
    public var arenaBytes: Int
    /// `--track-seconds` of every run (the warm-up's length), and its scan interval.
    public var warmUpSeconds: Double
    public var intervalMillis: Int
    /// What was asked (`auto`, `rwp-async`, `minor-sampling`) and what ran.
    public var requestedTracking: String
    public var method: String?
    /// The destination's protection backend.
    public var backend: BackendKind
    public var sourceGuestThreads: Int
    public var destinationGuestThreads: Int
    /// The source guest's accesses per second in the hot-first and address-order runs
    /// (the cost runs go as fast as the threads go: 0).
    public var guestAccessRate: Int
    /// Why nothing was measured (the kernel has no access tracking), or nil.
    public var skipped: String?
    public var runs: [WorkingSetRun] = []

    public func runs(_ kind: WorkingSetRun.Kind) -> [WorkingSetRun] { runs.filter { $0.kind == kind } }
}

/// One source/destination pair of the working-set set.
public struct WorkingSetRun: Codable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Tracked warm-up, the hot set streamed first, a 4-thread hot-set guest at the destination.
        case hotFirst = "hot-first"
        /// The same, the stream in address order (the hot set is still announced, so its faults are counted).
        case addressOrder = "address-order"
        /// Tracked warm-up of the guest at full speed, then an idle destination: the tracker's cost.
        case trackedUnthrottled = "tracked-unthrottled"
        /// The same warm-up with `--access-tracking off`: the baseline of that cost.
        case untrackedUnthrottled = "untracked-unthrottled"

        public var tracked: Bool { self != .untrackedUnthrottled }
    }

    public var kind: Kind
    public var repetition: Int
    /// The source's warm-up report (method, throughput, recall/precision, costs, series).
    public var workingSet: WorkingSetReport?
    public var streamHeadPages: Int
    public var streamHeadPagesSent: Int
    /// Destination: pages fetched on demand after switch-over, and the guest's own count of its demand faults.
    public var demandPages: Int
    public var guestDemandFaults: Int?
    public var backgroundPages: Int
    public var hotSetPages: Int
    public var hotSetDemandFaults: Int
    public var hotSetResidentMillis: Double?
    public var hotSetResidentWithPages: Int?
    /// Destination: connect until every page present.
    public var elapsedSeconds: Double
    public var integrity: RunIntegrity
    public var load: OtherLoad
}

extension BenchRunner {
    /// Source guest threads and destination guest threads of issue 10's hot-set guest.
    static let workingSetSourceThreads = 4
    static let workingSetDestinationThreads = 4
    /// The source guest's rate in the order runs: the source command's default. Unthrottled,
    /// this synthetic guest repeats its few "cold" pages so often that they are hot too.
    static let workingSetAccessRate = 100_000

    /// The working-set set: per repetition, hot-first and address order (alternating which
    /// goes first), then the unthrottled tracked and untracked warm-ups (alternating too; the
    /// untracked one as long as the latest tracked one took).
    func measureWorkingSet(size: Int, probe: KernelProbe) throws(AgentError) -> WorkingSetResult {
        var result = WorkingSetResult(arenaBytes: size, warmUpSeconds: configuration.workingSetSeconds,
                                      intervalMillis: configuration.workingSetIntervalMillis,
                                      requestedTracking: configuration.workingSetTracking?.rawValue ?? "auto",
                                      method: nil, backend: probe.backend, sourceGuestThreads: Self.workingSetSourceThreads,
                                      destinationGuestThreads: Self.workingSetDestinationThreads,
                                      guestAccessRate: Self.workingSetAccessRate)
        let method: AccessTrackingMethod
        do {
            method = try AccessTrackingMethod.select(requested: configuration.workingSetTracking, probe: probe)
        } catch {
            result.skipped = error.description
            configuration.progress("bench: working set skipped: \(error.description)")
            return result
        }
        result.method = method.rawValue
        configuration.progress("bench: working set (issue 10): \(ByteSize(bytes: size)) hot-set guest, "
            + String(format: "%.1f s", configuration.workingSetSeconds) + " warm-up tracked with \(method.rawValue), "
            + "hot-first against address order, then the tracker's cost (unthrottled guest, tracked against untracked)")
        // The untracked warm-up lasts as long as the last tracked one really did (a scan slower than the
        // interval stretches it): the two throughputs then cover windows of the same length.
        var matchedSeconds = configuration.workingSetSeconds
        for repetition in 1...max(1, configuration.repetitions) {
            let orders: [WorkingSetRun.Kind] = repetition % 2 == 1 ? [.hotFirst, .addressOrder] : [.addressOrder, .hotFirst]
            let costs: [WorkingSetRun.Kind] = repetition % 2 == 1
                ? [.trackedUnthrottled, .untrackedUnthrottled] : [.untrackedUnthrottled, .trackedUnthrottled]
            for kind in orders + costs {
                let run = try runWorkingSetPair(kind, repetition: repetition, size: size, method: method, backend: probe.backend,
                                                seconds: kind == .untrackedUnthrottled ? matchedSeconds : configuration.workingSetSeconds)
                result.runs.append(run)
                if kind == .trackedUnthrottled, let seconds = run.workingSet?.seconds {
                    matchedSeconds = max(configuration.workingSetSeconds, (seconds * 10).rounded() / 10)
                }
                configuration.progress("bench: working set \(kind.rawValue) run \(repetition)/\(configuration.repetitions): "
                    + Self.describe(run))
            }
        }
        return result
    }

    private func runWorkingSetPair(_ kind: WorkingSetRun.Kind, repetition: Int, size: Int, method: AccessTrackingMethod,
                                   backend: BackendKind, seconds: Double) throws(AgentError) -> WorkingSetRun {
        let pair = AgentPair(executable: configuration.executable, directory: workDirectory,
                             label: "workingset-\(kind.rawValue).\(repetition)", arenaBytes: size,
                             timeoutSeconds: configuration.runTimeoutSeconds)
        let unthrottled = kind == .trackedUnthrottled || kind == .untrackedUnthrottled
        var source = ["--guest-threads", "\(Self.workingSetSourceThreads)", "--dirty-rate", "0", "--guest-pattern", "hotset",
                      "--guest-access-rate", unthrottled ? "0" : "\(Self.workingSetAccessRate)",
                      "--track-seconds", "\(seconds)",
                      "--track-interval", "\(configuration.workingSetIntervalMillis)",
                      "--access-tracking", kind.tracked ? method.rawValue : "off",
                      kind == .hotFirst ? "--hot-first" : "--no-hot-first", "--background"]
        source += agentOptions
        let destination = ["--protection", backend.rawValue,
                           "--guest-threads", unthrottled ? "0" : "\(Self.workingSetDestinationThreads)",
                           "--pattern", "hotset", "--write-ratio", "\(configuration.writeRatio)"] + destinationAgentOptions
        let outcome = try pair.run(sourceOptions: source, destinationOptions: destination)
        let d = outcome.destination
        return WorkingSetRun(kind: kind, repetition: repetition, workingSet: outcome.source.workingSet,
                             streamHeadPages: outcome.source.streamHeadPages, streamHeadPagesSent: outcome.source.streamHeadPagesSent,
                             demandPages: d.demandPages, guestDemandFaults: d.guest?.demandFaults, backgroundPages: d.backgroundPages,
                             hotSetPages: d.hotSetPages, hotSetDemandFaults: d.hotSetDemandFaults,
                             hotSetResidentMillis: d.hotSetResidentMillis, hotSetResidentWithPages: d.hotSetResidentWithPages,
                             elapsedSeconds: d.elapsedSeconds, integrity: outcome.integrity, load: outcome.load)
    }

    /// One progress line.
    static func describe(_ run: WorkingSetRun) -> String {
        var parts: [String] = []
        if let ws = run.workingSet {
            parts.append("warm-up \(ws.method)"
                + (ws.guestAccessesPerSecond.map { String(format: ", guest %.0f accesses/s", $0) } ?? ""))
            if let recall = ws.recall, let precision = ws.precision {
                parts.append(String(format: "recall %.2f, precision %.2f", recall, precision))
            }
            if let c = ws.costs {
                parts.append((ws.method == AccessTrackingMethod.rwpAsync.rawValue ? ""
                        : String(format: "tracker %d faults, handler %.0f ms, ", c.faults, Double(c.handlerNanos) / 1e6))
                    + String(format: "%d scans %.0f ms; warm-up %.1f s", c.scans, Double(c.scanNanos) / 1e6, ws.seconds))
            } else {
                parts.append(String(format: "warm-up %.1f s", ws.seconds))
            }
        }
        if run.kind == .hotFirst || run.kind == .addressOrder {
            parts.append("\(run.demandPages) demand pages (\(run.hotSetDemandFaults) of the \(run.hotSetPages) hot)")
            parts.append(run.hotSetResidentMillis.map { String(format: "hot set resident after %.0f ms", $0) } ?? "hot set never all resident")
        }
        parts.append(String(format: "migrated in %.3f s", run.elapsedSeconds))
        if run.load.isBusy { parts.append(String(format: "busy: other processes %.2f cores", run.load.otherCores)) }
        return parts.joined(separator: "; ")
    }
}
