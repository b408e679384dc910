import ArgumentParser
import MigrateAgent
import SyntheticGuest

struct SourceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source", abstract: "Own the guest's memory and migrate it to one destination.")

    @Option(help: "Address to listen on (port 0 picks a free one, printed as 'listening on HOST:PORT').")
    var listen = "127.0.0.1:7000"
    @Option(help: "Guest memory size, e.g. 256MiB or 1GiB (default 256MiB; with --memory-file, the file's size).")
    var arena: String?
    @Option(help: ArgumentHelp("Serve this memory image instead of a synthetic guest (read-only, pure post-copy).",
                               valueName: "path"))
    var memoryFile: String?
    @Option(help: ArgumentHelp("""
        With --memory-file: when the migration ends, write the order in which pages were first requested \
        on demand to this file (an access trace; also after a failure past switch-over, then partial).
        """, valueName: "path"))
    var recordTrace: String?
    @Option(help: ArgumentHelp("""
        With --memory-file: stream this access trace's pages first, in its order, then the rest. \
        A trace of another image (size, page size or contents) is refused.
        """, valueName: "path"))
    var prefetchTrace: String?
    @Option(help: "Page size the memory moves in: 4KiB, or 2MiB for a VMM's hugetlbfs regions.") var pageSize = "4KiB"
    @Option(help: "Guest threads writing memory until switch-over.") var guestThreads = 2
    @Option(help: "Pages per second the guest writes until switch-over.") var dirtyRate = 20_000
    @Option(help: "Let the guest also read its pages in this pattern until switch-over: sequential, random or hotset (90% of accesses to the same 10% the destination's hotset guest uses). Default: it only writes.")
    var guestPattern: AccessPattern?
    @Option(help: "With --guest-pattern, accesses per second in all (0: as fast as the threads go).")
    var guestAccessRate = 100_000
    @Option(help: "Pre-copy rounds while the guest still runs here (0: pure post-copy).") var precopyRounds = 0
    @Option(help: "End pre-copy early once a round dirtied at most this many pages (default: 1/64 of the arena).")
    var convergePages: Int?
    @Option(help: "How pre-copy finds dirtied pages: pagemap-scan, sync-wp or auto.") var dirtyTracking = "auto"
    @Option(help: "Before listening, run the guest this many seconds tracking its accesses; the pages it used most go first (0: off).")
    var trackSeconds = 0.0
    @Option(help: "Milliseconds between two scans of the guest's accessed pages.") var trackInterval = 100
    @Option(help: "How accesses are tracked: rwp-async (Linux 7.3), minor-sampling (the emulation), auto, or off (warm up without tracking: the baseline of its cost).")
    var accessTracking = "auto"
    @Option(help: "Percent of the pages the minor-sampling emulation watches per interval (each watched page the guest touches costs it a fault).")
    var trackSamplePercent = 100
    @Flag(inversion: .prefixedNo, help: "Send the pages the warm-up found hot first (off: address order).")
    var hotFirst = true
    @Flag(inversion: .prefixedNo, help: "Stream every page in the background (off: pages move only on demand).")
    var background = true

    @Flag(inversion: .prefixedNo, help: "After a demand request, continue the background stream right behind the requested page.")
    var followDemand = true
    @Option(help: "Microseconds the loop keeps polling instead of sleeping after demand activity (0: off).")
    var busyPoll = 50
    @Flag(inversion: .prefixedNo, help: ArgumentHelp(
        "Busy-poll after requests also while the background stream is being written. Off by default: on busy cores "
        + "a polling loop's yield hands its CPU away until the next tick, and a request waits that long."))
    var busyPollDuringStream = false
    @Option(help: ArgumentHelp(
        "The loop thread's scheduler slice in microseconds (Linux 6.12+ EEVDF custom slice, 100-100000): a short one "
        + "lets the loop preempt busy threads when a fault or request wakes it. Default: the kernel's."))
    var loopSlice: Int?
    @Option(help: ArgumentHelp(
        "Most bytes a second the migration sends, e.g. 110MiB (default: no limit), demand pages first: the kernel's TCP "
        + "paces the background stream to what they leave. Set just below a shared link's rate, no queue builds in front "
        + "of demand pages.",
        valueName: "size"))
    var maxBandwidth: String?
    @Option(help: "Seconds a destination may leave the stream unread before giving up.") var peerTimeout = 10.0
    @OptionGroup var key: KeyOptions
    @Option(help: "After switch-over, seconds to resume the session when a connection drops (0: a drop ends the migration).")
    var reconnectTimeout = 30.0
    @Option(help: "Seconds a new connection has to prove the key and say hello before it is closed.")
    var handshakeTimeout = 5.0
    @Option(help: "Write the report as JSON to this file.") var reportJson: String?
    @Flag(help: "Print the report as JSON on stdout.") var json = false

    func validate() throws {
        try checkRange(precopyRounds, "--precopy-rounds", in: OptionBounds.precopyRounds)
        try checkRange(guestThreads, "--guest-threads", in: OptionBounds.sourceGuestThreads)
        if memoryFile != nil, arena != nil {
            throw ValidationError("--memory-file and --arena exclude each other: the file's size is the arena's")
        }
        for (option, value) in [("--record-trace", recordTrace), ("--prefetch-trace", prefetchTrace)] where value != nil && memoryFile == nil {
            throw ValidationError("\(option) needs --memory-file: an access trace belongs to one memory image")
        }
        if prefetchTrace != nil, !background {
            throw ValidationError("--prefetch-trace orders the background stream; it does nothing with --no-background")
        }
        try checkRange(dirtyRate, "--dirty-rate", in: OptionBounds.dirtyRate)
        try checkRange(convergePages ?? 0, "--converge-pages", in: 0...Int.max)
        try checkRange(busyPoll, "--busy-poll", in: OptionBounds.busyPollMicros)
        if let loopSlice { try checkRange(loopSlice, "--loop-slice", in: OptionBounds.loopSliceMicros) }
        try checkRange(guestAccessRate, "--guest-access-rate", in: OptionBounds.guestAccessRate)
        try checkSeconds(trackSeconds, "--track-seconds", in: OptionBounds.trackSeconds)
        try checkRange(trackInterval, "--track-interval", in: OptionBounds.trackIntervalMillis)
        try checkRange(trackSamplePercent, "--track-sample-percent", in: 1...100)
        if trackSeconds > 0, memoryFile != nil {
            throw ValidationError("--track-seconds needs a running guest; a --memory-file has none")
        }
        try checkSeconds(peerTimeout, "--peer-timeout", in: OptionBounds.peerTimeoutSeconds)
        try checkSeconds(reconnectTimeout, "--reconnect-timeout", in: OptionBounds.reconnectTimeoutSeconds)
        try checkSeconds(handshakeTimeout, "--handshake-timeout", in: OptionBounds.handshakeTimeoutSeconds)
    }

    func run() throws {
        var configuration = SourceConfiguration()
        configuration.pageSize = try parseSize(pageSize)
        guard [4096, 2 << 20].contains(configuration.pageSize) else { throw ValidationError("--page-size must be 4KiB or 2MiB") }
        if let memoryFile {
            configuration.memoryFile = memoryFile  // nothing runs in an image: the default workload
            configuration.recordTrace = recordTrace
            configuration.prefetchTrace = prefetchTrace
        } else {
            configuration.arenaSize = try parseSize(arena ?? "256MiB")
            configuration.workload = { [guestThreads, dirtyRate, guestPattern, guestAccessRate] arena in
                SourceGuest(arena: arena, threads: guestThreads, dirtyRate: dirtyRate, pattern: guestPattern, accessRate: guestAccessRate)
            }
        }
        configuration.background = background
        configuration.followDemand = followDemand
        configuration.busyPollMicros = busyPoll
        configuration.busyPollDuringStream = busyPollDuringStream
        configuration.loopSliceMicros = loopSlice
        if let maxBandwidth {
            let rate = try parseSize(maxBandwidth)
            guard rate >= OptionBounds.minimumBandwidth else {
                throw ValidationError("--max-bandwidth must be at least \(ByteSize(bytes: OptionBounds.minimumBandwidth)) a second, not \(maxBandwidth)")
            }
            configuration.maxBandwidth = UInt64(rate)
        }
        configuration.peerTimeoutSeconds = peerTimeout
        configuration.reconnectTimeoutSeconds = reconnectTimeout
        configuration.handshakeTimeoutSeconds = handshakeTimeout
        configuration.precopyRounds = precopyRounds
        configuration.convergePages = convergePages
        if dirtyTracking != "auto" {
            guard let method = DirtyTrackingMethod(rawValue: dirtyTracking) else {
                throw ValidationError("--dirty-tracking must be pagemap-scan, sync-wp or auto")
            }
            configuration.dirtyTracking = method
        }
        configuration.trackSeconds = trackSeconds
        configuration.trackIntervalMillis = trackInterval
        configuration.trackSamplePercent = trackSamplePercent
        configuration.hotFirst = hotFirst
        switch accessTracking {
        case "auto": break
        case "off": configuration.trackingOff = true
        default:
            guard let method = AccessTrackingMethod(rawValue: accessTracking) else {
                throw ValidationError("--access-tracking must be rwp-async, minor-sampling, auto or off")
            }
            configuration.accessTracking = method
        }
        configuration.onListening = { Console.out("listening on \($0)") }
        configuration.progress = { Console.err($0) }
        try runReportingErrors {
            try checkWritable(reportJson)
            configuration.key = try key.load(role: "source")
            configuration.encrypt = key.encrypt
            configuration.listen = try SocketAddress(parsing: listen)
            let agent = try SourceAgent(configuration: configuration)
            _ = try runAgent(reportJson: reportJson, json: json, text: ReportFormatting.text, current: { agent.currentReport }) {
                try agent.run()
            }
        }
    }
}
