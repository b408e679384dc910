import ArgumentParser
import Dispatch
import FoundationEssentials
import Glibc
import MigrateAgent
import MigrateBench
import MigrateDemo

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure fault latency against same-run baselines.",
        discussion: """
            Measures, in one run: the kernel's first-touch fault, raw userfaultfd resolution (MISSING + UFFDIO_COPY, \
            MINOR + UFFDIO_CONTINUE), a loopback TCP round trip and bulk bandwidth between two processes; then agent \
            scenarios (a real source and destination process each) and idle-guest whole migrations; then, with --links, the \
            same across a real link: the agents in two network namespaces joined by a veth pair shaped with tc tbf (the \
            benchmark creates and removes them); then handler mode, the destination filling a separate VMM's memory \
            (--handler-mode); then issue 10's working-set figures (--working-set). Scenarios are named PATTERN-THREADSt-bg|nobg[-BACKEND][-stale|-hybrid][@SIZE], \
            e.g. random-1t-nobg-minor or random-4t-bg@512MiB; see --list-scenarios. \
            Any wrong page, digest mismatch or failed agent fails the run (exit status 1).
            """)

    @Option(help: "Guest memory of each agent scenario.") var arena = "256MiB"
    @Option(help: "Comma-separated scenario names, or default, all, none.") var scenarios = "default"
    @Option(help: "Runs of each scenario and migration (latencies are merged; migrations report the median).")
    var repetitions = 3
    @Option(help: "Fraction of guest accesses that also write.") var writeRatio = 0.2
    @Option(help: "Idle-guest migration sizes, comma-separated, or none.") var migrationSizes = "256MiB,1GiB"
    @Option(help: "Samples per baseline distribution (faults or round trips).") var baselineSamples = 20_000
    @Option(help: "Bytes per loopback bandwidth transfer (three transfers).") var bandwidth = "1GiB"
    @Flag(inversion: .prefixedNo, help: "Also measure the baselines pinned to one CPU and to two (the floor is the lowest).")
    var pinnedBaselines = true
    @Option(help: "Passed to both agents as --busy-poll (microseconds; 0: off). Default: the agents' own.")
    var busyPoll: Int?
    @Option(help: ArgumentHelp(
        "Real links to measure, comma-separated (e.g. 1gbit,10gbit), none, or auto: 1gbit,10gbit when root with ip and tc, none otherwise.",
        valueName: "rates"))
    var links = "auto"
    @Option(help: ArgumentHelp(
        "On a link, the source's --max-bandwidth as this percentage of the link's rate: its background stream gets what "
            + "demand pages leave of it, so they do not queue behind the stream (0: unpaced).", valueName: "percent"))
    var linkPacing = 95
    @Option(help: ArgumentHelp(
        "Issue 10's working-set figures on a hot-set guest of this size (hot-first against address order, the tracker's "
            + "cost, recall and precision), or none. Asked for alone (--scenarios none --migration-sizes none --links none), "
            + "it runs without the baselines. Default: the --arena size.", valueName: "size"))
    var workingSet = "arena"
    @Option(help: "Seconds of each working-set run's warm-up (source --track-seconds).") var workingSetSeconds = 1.0
    @Option(help: "Milliseconds between two scans in the working-set warm-ups (source --track-interval).")
    var workingSetInterval = 100
    @Option(help: "The working-set runs' tracker: auto (the best the kernel has), rwp-async or minor-sampling.")
    var workingSetTracking = "auto"
    @Option(help: ArgumentHelp(
        "Handler-mode figures on an image of this size, or none: the destination as the page-fault handler of the "
            + "stand-in VMM (stand-in-vmm, beside this binary; skipped with a note when it is missing), with one VMM guest "
            + "thread without and with the background stream, and with none. Default: the --arena size.", valueName: "size"))
    var handlerMode = "arena"
    @Option(help: "Passed to both agents as --loop-slice (microseconds). Default: the kernel's slice.")
    var loopSlice: Int?
    @Flag(inversion: .prefixedNo, help: ArgumentHelp(
        "Passed to every destination as --yield-to-demand or --no-yield-to-demand. Default: the agent's own (yield)."))
    var yieldToDemand: Bool?
    @Option(help: ArgumentHelp(
        "Passed to every destination as --install-thread: auto, always or never. Default: the agent's own (auto).",
        valueName: "auto|always|never"))
    var installThread: InstallThreadUse?
    @Flag(help: "Both agents of every run encrypt their connections (--encrypt): measures the cost of encryption.")
    var encrypt = false
    @Option(help: "Seconds one agent run may take before it is killed and the benchmark fails.") var runTimeout = 180.0
    @Option(help: "Keep per-run reports and logs in this directory (default: a temporary one, removed on success).")
    var workDir: String?
    @Option(help: "Write every figure as JSON to this file.") var json: String?
    @Option(help: "Write latency distributions (percentile,latency_us) per scenario and baseline to this directory.")
    var csv: String?
    @Flag(help: "Print the scenario names and exit.") var listScenarios = false
    @Option(help: "Print the Markdown results section for this bench JSON file and exit (scripts/bench uses it).")
    var renderMarkdown: String?
    @Option(help: "With --render-markdown: the latency CDF image to show.") var image = "docs/latency-cdf.png"
    @Flag(help: ArgumentHelp("Serve the loopback baselines (a child process of the benchmark).", visibility: .hidden))
    var rttServer = false
    @Option(help: ArgumentHelp("With --rtt-server: the IPv4 address to listen on.", visibility: .hidden))
    var rttListen = "127.0.0.1"

    func validate() throws {
        try checkRange(repetitions, "--repetitions", in: OptionBounds.repetitions)
        try checkFraction(writeRatio, "--write-ratio")
        try checkRange(baselineSamples, "--baseline-samples", in: OptionBounds.baselineSamples)
        try checkSeconds(runTimeout, "--run-timeout", in: OptionBounds.runTimeoutSeconds)
        if let busyPoll { try checkRange(busyPoll, "--busy-poll", in: OptionBounds.busyPollMicros) }
        if let loopSlice { try checkRange(loopSlice, "--loop-slice", in: OptionBounds.loopSliceMicros) }
        try checkSeconds(workingSetSeconds, "--working-set-seconds", in: 0.05...OptionBounds.trackSeconds.upperBound)
        try checkRange(workingSetInterval, "--working-set-interval", in: OptionBounds.trackIntervalMillis)
        if workingSetTracking != "auto", AccessTrackingMethod(rawValue: workingSetTracking) == nil {
            throw ValidationError("--working-set-tracking must be auto, rwp-async or minor-sampling")
        }
    }

    func run() throws {
        if rttServer { return try runReportingErrors { try LoopbackServer.run(host: rttListen) } }
        if let renderMarkdown { return try render(renderMarkdown) }
        var configuration = BenchConfiguration(executable: AgentProcess.currentExecutable)
        configuration.arenaSize = try parseSize(arena)
        configuration.scenarios = scenarios.split(separator: ",").map { $0.trimmed }
        configuration.repetitions = repetitions
        configuration.writeRatio = writeRatio
        configuration.migrationSizes = migrationSizes == "none" ? []
            : try migrationSizes.split(separator: ",").map { try parseSize(String($0)) }
        configuration.baselineSamples = baselineSamples
        configuration.bandwidthBytes = try parseSize(bandwidth)
        guard configuration.bandwidthBytes > 0 else { throw ValidationError("--bandwidth must be larger than zero") }
        configuration.pinnedBaselines = pinnedBaselines
        configuration.runTimeoutSeconds = runTimeout
        configuration.busyPollMicros = busyPoll
        configuration.encrypt = encrypt
        configuration.yieldToDemand = yieldToDemand
        configuration.installThread = installThread
        configuration.loopSliceMicros = loopSlice
        switch workingSet {
        case "none": configuration.workingSetBytes = nil
        case "arena": configuration.workingSetBytes = configuration.arenaSize
        default: configuration.workingSetBytes = try parseSize(workingSet)
        }
        switch handlerMode {
        case "none": configuration.handlerModeBytes = nil
        case "arena": configuration.handlerModeBytes = configuration.arenaSize
        default: configuration.handlerModeBytes = try parseSize(handlerMode)
        }
        if let bytes = configuration.handlerModeBytes, bytes <= 0 || bytes % 4096 != 0 {
            throw ValidationError("--handler-mode must be a positive multiple of 4 KiB, or none")
        }
        configuration.workingSetSeconds = workingSetSeconds
        configuration.workingSetIntervalMillis = workingSetInterval
        configuration.workingSetTracking = AccessTrackingMethod(rawValue: workingSetTracking)
        configuration.links = try linkRates()
        try checkRange(linkPacing, "--link-pacing", in: OptionBounds.linkPacingPercent)
        configuration.linkPacingPercent = linkPacing > 0 ? linkPacing : nil
        configuration.workDirectory = workDir
        configuration.commandLine = CommandLine.arguments
        configuration.progress = { Console.err($0) }
        if listScenarios { return try list() }

        try runReportingErrors { try checkWritable(json, what: "the bench JSON") }
        let runner = BenchRunner(configuration: configuration)
        let report = runner.run()
        try runReportingErrors {
            if let json { try ReportFormatting.write(report, toFile: json) }
            if let csv, report.succeeded {
                try LatencyCSV.write(runner.distributions, floors: report.baselines?.floors ?? [], to: csv)
            }
        }
        Console.out(BenchTable.text(report))
        if !report.succeeded {
            Console.err("error: the benchmark failed: \(report.error ?? "unknown error")")
            throw ExitCode(1)
        }
    }

    /// `--links`: auto measures 1 and 10 Gbit/s where the namespaces can be made, and says why not elsewhere.
    private func linkRates() throws -> [LinkRate] {
        switch links {
        case "none": return []
        case "auto":
            if let reason = BenchRunner.linkUnavailableReason() {
                Console.err("bench: no real links measured (--links auto): \(reason)")
                return []
            }
            return ["1gbit", "10gbit"].map { try! LinkRate(parsing: $0) }
        default:
            do {
                return try links.split(separator: ",").map { (text) throws(AgentError) -> LinkRate in try LinkRate(parsing: String(text)) }
            } catch {
                throw ValidationError("--links: \(error)")
            }
        }
    }

    private func list() throws {
        let probe: KernelProbe
        do { probe = try KernelProbe.run() } catch {
            Console.err("error: \(error)")
            throw ExitCode(1)
        }
        Console.out("default:")
        for s in BenchScenario.defaults(backend: probe.backend, staleAvailable: true) { Console.out("  \(s.name)") }
        Console.out("all (on this kernel's backends: \(probe.availableBackends.map(\.rawValue).joined(separator: ", "))):")
        for s in BenchScenario.all(backends: probe.availableBackends, staleAvailable: true) { Console.out("  \(s.name)") }
        Console.out("(-stale and -hybrid scenarios need hybrid pre-copy in the source; hotset needs bg; NAME@SIZE runs with "
            + "an arena of its own and adds an idle migration of that size to compare with)")
    }

    private func render(_ path: String) throws {
        guard let report = ReportFormatting.read(BenchReport.self, fromFile: path) else {
            Console.err("error: \(path) is not a readable bench JSON report")
            throw ExitCode(1)
        }
        Console.out(BenchMarkdown.results(report, image: image))
    }
}
