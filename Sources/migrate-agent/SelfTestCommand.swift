import ArgumentParser
import Dispatch
import BackendContract
import MigrateAgent

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check the protection backends against the running kernel with real faults.",
        discussion: """
            For each backend: fault flags classify as missing or protected; absent pages faulted by several \
            threads are installed once each; installing pages already there reports them as already present \
            without overwriting them; reads and writes of protected pages block until refreshed with new bytes; \
            refresh of an unchanged page uses the held copy (or throws where the backend keeps none); release() \
            frees blocked threads; for rwp, releaseAllAsync (UFFDIO_SET_MODE) frees blocked threads on the old bytes \
            and disabling it restores trapping. Then, for each access-tracking method: pages read and written are \
            reported, untouched ones are not, reported pages are protected again, stop() is idempotent. The same \
            checks run in `swift test` (BackendContractTests, AccessTrackerTests). Prints one PASS or FAIL line \
            per check and exits 0 only if every check passed.
            """)

    @Option(help: "Backends to check: rwp, minor, missing, auto (the one the agent would pick) or all (every one the kernel offers).")
    var protection = BackendSelection.all
    @Option(help: "Access trackers to check: rwp-async, minor-sampling, all (every one the kernel offers) or none.")
    var accessTracking = AccessTrackerSelection.all
    @Option(help: "Guest threads per check.") var threads = 4
    @Option(help: "Seconds any wait may take before its check fails and blocked threads are released.")
    var timeout = 10.0
    @Flag(help: "Print the results as a JSON array of {backend, check, passed, detail}.") var json = false

    func validate() throws {
        guard SelfTestConfiguration.threadLimit.contains(threads) else {
            throw ValidationError("--threads must be between \(SelfTestConfiguration.threadLimit.lowerBound) and \(SelfTestConfiguration.threadLimit.upperBound)")
        }
        try checkSeconds(timeout, "--timeout", in: OptionBounds.runTimeoutSeconds)
    }

    func run() throws {
        try runReportingErrors { try runChecks() }
    }

    private func runChecks() throws {
        var configuration = SelfTestConfiguration()
        configuration.selection = protection
        configuration.trackers = accessTracking
        configuration.threads = threads
        configuration.timeoutSeconds = timeout
        let probe: KernelProbe
        do { probe = try KernelProbe.run() } catch { throw AgentError.unsupported(error.description) }
        let selfTest = SelfTest(probe: probe, configuration: configuration)
        let backends = try selfTest.backends()
        let trackers = try selfTest.trackers()
        selfTest.header(testing: backends, trackers: trackers).forEach(note)
        let start = DispatchTime.now().uptimeNanoseconds
        let results = selfTest.run(backends) { result in
            if !json { Console.out(result.line) }
        }
        let trackerResults = selfTest.run(trackers: trackers) { result in
            if !json { Console.out(result.line + (result.passed ? ": \(result.detail)" : "")) }
        }
        if json { Console.out(ReportFormatting.json(results.map(SelfTestEntry.backend) + trackerResults.map(SelfTestEntry.tracker))) }
        note(SelfTest.verdict(results, trackers: trackerResults, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
        if results.contains(where: { !$0.passed }) || trackerResults.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }

    /// A line about the run: on stdout, or on stderr with --json so that stdout carries only the JSON array.
    private func note(_ line: String) {
        if json { Console.err(line) } else { Console.out(line) }
    }
}

extension BackendSelection: ExpressibleByArgument {
    public static var allValueStrings: [String] { argumentNames }
    /// What `--help` shows as the default: the argument text, not the Swift value.
    public var defaultValueDescription: String {
        switch self {
        case .all: "all"
        case .auto: "auto"
        case .only(let kind): kind.rawValue
        }
    }
}

/// One element of `--json`: a backend check (`backend`, `check`, ...) or an access-tracker check (`tracker`, ...).
private enum SelfTestEntry: Encodable {
    case backend(SelfTestResult)
    case tracker(AccessTrackerResult)

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .backend(let result): try result.encode(to: encoder)
        case .tracker(let result): try result.encode(to: encoder)
        }
    }
}

extension AccessTrackerSelection: ExpressibleByArgument {
    public static var allValueStrings: [String] { argumentNames }
    public var defaultValueDescription: String {
        switch self {
        case .all: "all"
        case .none: "none"
        case .only(let method): method.rawValue
        }
    }
}
