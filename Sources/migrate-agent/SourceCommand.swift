import ArgumentParser
import MigrateAgent
import SyntheticGuest

struct SourceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source", abstract: "Own the guest's memory and migrate it to one destination.")

    @Option(help: "Address to listen on (port 0 picks a free one, printed as 'listening on HOST:PORT').")
    var listen = "127.0.0.1:7000"
    @Option(help: "Guest memory size, e.g. 256MiB or 1GiB.") var arena = "256MiB"
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
    @Option(help: "Seconds a new connection has to prove the key and say hello before it is closed.")
    var handshakeTimeout = 5.0
    @Option(help: "Write the report as JSON to this file.") var reportJson: String?
    @Flag(help: "Print the report as JSON on stdout.") var json = false

    func validate() throws {
        guard precopyRounds >= 0 else { throw ValidationError("--precopy-rounds must be 0 or more") }
        guard guestThreads >= 1 else { throw ValidationError("--guest-threads must be 1 or more") }
        guard dirtyRate >= 0 else { throw ValidationError("--dirty-rate must be 0 or more") }
        guard peerTimeout > 0 else { throw ValidationError("--peer-timeout must be positive") }
        guard (0.1...600).contains(handshakeTimeout) else { throw ValidationError("--handshake-timeout must be 0.1...600 seconds") }
    }

    func run() throws {
        var configuration = SourceConfiguration()
        configuration.arenaSize = try parseSize(arena)
        configuration.workload = { [guestThreads, dirtyRate] arena in
            SourceGuest(arena: arena, threads: guestThreads, dirtyRate: dirtyRate)
        }
        configuration.background = background
        configuration.busyPollMicros = busyPoll
        configuration.peerTimeoutSeconds = peerTimeout
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
