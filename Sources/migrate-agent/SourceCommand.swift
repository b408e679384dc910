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
    @Option(help: "Pre-copy rounds while the guest still runs here (0: pure post-copy).") var precopyRounds = 0
    @Option(help: "End pre-copy early once a round dirtied at most this many pages (default: 1/64 of the arena).")
    var convergePages: Int?
    @Option(help: "How pre-copy finds dirtied pages: pagemap-scan, sync-wp or auto.") var dirtyTracking = "auto"
    @Flag(inversion: .prefixedNo, help: "Stream every page in the background (off: pages move only on demand).")
    var background = true
    @Option(help: "Microseconds the loop keeps polling instead of sleeping after demand activity (0: off).")
    var busyPoll = 50
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
            configuration.workload = { [guestThreads, dirtyRate] arena in
                SourceGuest(arena: arena, threads: guestThreads, dirtyRate: dirtyRate)
            }
        }
        configuration.background = background
        configuration.busyPollMicros = busyPoll
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
