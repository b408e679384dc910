import ArgumentParser
import MigrateAgent
import SyntheticGuest

struct DestinationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destination", abstract: "Run the guest here while its memory arrives from the source.")

    @Option(help: "The source's address, HOST:PORT.") var connect: String
    @Option(help: "Guest memory size; must equal the source's (default 256MiB; with --uffd-socket, the VMM's regions say).")
    var arena: String?
    @Option(help: ArgumentHelp(
        "Handler mode: wait on this Unix socket for a VMM to hand over its regions and userfaultfd (Firecracker's uffd protocol), and fill that VMM's memory.",
        valueName: "path"))
    var uffdSocket: String?
    @Option(help: "Handler mode: seconds to wait for the VMM to connect and hand over.") var vmmTimeout = 60.0
    @Flag(inversion: .prefixedNo, help: """
        Handler mode: SIGKILL the VMM when the migration fails (default on: its missing pages will never come, \
        and a VMM whose handler died hangs forever).
        """)
    var killVmmOnFailure = true
    @Option(help: "Protection backend: rwp, minor, missing or auto.") var protection = ProtectionOption(argument: "auto")!
    @Option(help: "Guest threads.") var guestThreads = 4
    @Flag(help: "Run no guest here: only receive the memory (checked by the end-to-end digest), e.g. from a --memory-file source.")
    var noGuest = false
    @Option(help: "Guest access pattern: sequential, random or hotset.") var pattern = AccessPattern.random
    @Option(help: "Fraction of guest accesses that also write.") var writeRatio = 0.2
    @Option(help: "Seconds without data from the source before giving up.") var peerTimeout = 10.0
    @Option(help: "Microseconds the loop keeps polling instead of sleeping after demand activity (0: off).")
    var busyPoll = 50
    @Option(help: ArgumentHelp(
        "The loop thread's scheduler slice in microseconds (Linux 6.12+ EEVDF custom slice, 100-100000): a short one "
        + "lets the loop preempt busy threads when a fault or request wakes it. Default: the kernel's."))
    var loopSlice: Int?
    @Option(help: ArgumentHelp(
        "When background pages are installed on a thread of their own, so that faults do not wait behind them: "
        + "auto (while the guest faults; with no fault to serve the loop installs them faster itself), always, "
        + "or never. A VMM's huge pages are always installed on the loop.", valueName: "auto|always|never"))
    var installThread: InstallThreadUse?
    @Flag(help: .hidden)  // the earlier spelling of --install-thread never
    var noInstallThread = false
    @Flag(inversion: .prefixedNo, help: ArgumentHelp(
        "Allocate the whole arena before connecting (minor backend): arriving pages are copied into memory already "
        + "there and mapped with UFFDIO_CONTINUE, which costs a fraction of UFFDIO_COPY while the guest runs here, and "
        + "a machine short of memory fails before the migration starts, not in the middle of it."))
    var preallocate = true
    @Flag(inversion: .prefixedNo, help: ArgumentHelp(
        "Demand first: while the guest faults, the install thread runs only on a CPU nothing else wants (SCHED_IDLE), "
        + "so faults are served at once; with every core busy the stream is then slower."))
    var yieldToDemand = true
    @OptionGroup var key: KeyOptions
    @Option(help: "After switch-over, seconds to resume the session when a connection drops (0: a drop ends the migration).")
    var reconnectTimeout = 30.0
    @Flag(help: ArgumentHelp(
        "If the migration fails after switch-over when every page is here but some are stale, let the guest run on "
        + "their stale copies (rwp backend with RWP_ASYNC: one UFFDIO_SET_MODE releases every blocked and later "
        + "access) instead of stopping it; reported, and the exit status still says the migration failed."))
    var keepStaleOnFailure = false
    @Option(help: "Write the report as JSON to this file.") var reportJson: String?
    @Option(help: "Write the guest's demand-fault latencies (an HdrHistogram of nanoseconds, JSON) to this file.")
    var latencyHistogram: String?
    @Option(help: "Rewrite counters and the demand-latency histogram to this Prometheus text file every second.")
    var metricsFile: String?
    @Flag(help: "Print the report as JSON on stdout.") var json = false

    func validate() throws {
        try checkRange(guestThreads, "--guest-threads", in: OptionBounds.destinationGuestThreads)
        try checkFraction(writeRatio, "--write-ratio")
        try checkSeconds(peerTimeout, "--peer-timeout", in: OptionBounds.peerTimeoutSeconds)
        try checkRange(busyPoll, "--busy-poll", in: OptionBounds.busyPollMicros)
        if let loopSlice { try checkRange(loopSlice, "--loop-slice", in: OptionBounds.loopSliceMicros) }
        try checkSeconds(reconnectTimeout, "--reconnect-timeout", in: OptionBounds.reconnectTimeoutSeconds)
        try checkSeconds(vmmTimeout, "--vmm-timeout", in: OptionBounds.runTimeoutSeconds)
        if uffdSocket != nil, arena != nil {
            throw ValidationError("--uffd-socket and --arena exclude each other: the VMM's regions give the size")
        }
        if noInstallThread, let installThread, installThread != .never {
            throw ValidationError("--no-install-thread and --install-thread \(installThread.rawValue) exclude each other")
        }
    }

    func run() throws {
        var configuration = DestinationConfiguration()
        configuration.arenaSize = try parseSize(arena ?? "256MiB")
        configuration.vmmSocket = uffdSocket
        configuration.vmmHandoverTimeoutSeconds = vmmTimeout
        configuration.killVMMOnFailure = killVmmOnFailure
        configuration.protection = protection.kind
        var guest = DestinationGuest.Configuration()
        guest.threads = guestThreads
        guest.pattern = pattern
        guest.writeRatio = writeRatio
        // In handler mode the VMM is the guest.
        if !noGuest, uffdSocket == nil { configuration.workload = { [guest] in DestinationGuest(configuration: guest) } }
        configuration.peerTimeoutSeconds = peerTimeout
        configuration.reconnectTimeoutSeconds = reconnectTimeout
        configuration.keepStaleOnFailure = keepStaleOnFailure
        configuration.busyPollMicros = busyPoll
        configuration.loopSliceMicros = loopSlice
        configuration.installThread = noInstallThread ? .never : installThread ?? .whileFaulting
        configuration.preallocate = preallocate
        configuration.yieldToDemand = yieldToDemand
        configuration.progress = { Console.err($0) }
        try runReportingErrors {
            try checkWritable(reportJson)
            try checkWritable(latencyHistogram, what: "the latency histogram")
            try checkWritable(metricsFile, what: "the metrics file")
            configuration.metricsFile = metricsFile
            configuration.key = try key.load(role: "destination")
            configuration.encrypt = key.encrypt
            configuration.source = try SocketAddress(parsing: connect)
            let agent = try DestinationAgent(configuration: configuration)
            _ = try runAgent(reportJson: reportJson, json: json, text: ReportFormatting.text, current: { agent.currentReport }) {
                try agent.run()
            }
            if let latencyHistogram { writeOrWarn(agent.faultLatencyHistogram, toFile: latencyHistogram, what: "the latency histogram") }
        }
    }
}
