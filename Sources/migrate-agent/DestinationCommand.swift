import ArgumentParser
import MigrateAgent
import SyntheticGuest

struct DestinationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destination", abstract: "Run the guest here while its memory arrives from the source.")

    @Option(help: "The source's address, HOST:PORT.") var connect: String
    @Option(help: "Guest memory size; must equal the source's.") var arena = "256MiB"
    @Option(help: "Protection backend: rwp, minor, missing or auto.") var protection = ProtectionOption(argument: "auto")!
    @Option(help: "Guest threads.") var guestThreads = 4
    @Option(help: "Guest access pattern: sequential, random or hotset.") var pattern = AccessPattern.random
    @Option(help: "Fraction of guest accesses that also write.") var writeRatio = 0.2
    @Option(help: "Seconds without data from the source before giving up.") var peerTimeout = 10.0
    @Option(help: "Microseconds the loop keeps polling instead of sleeping after demand activity (0: off).")
    var busyPoll = 50
    @OptionGroup var key: KeyOptions
    @Option(help: "Write the report as JSON to this file.") var reportJson: String?
    @Option(help: "Write the guest's demand-fault latencies (an HdrHistogram of nanoseconds, JSON) to this file.")
    var latencyHistogram: String?
    @Flag(help: "Print the report as JSON on stdout.") var json = false

    func validate() throws {
        guard (0...256).contains(guestThreads) else { throw ValidationError("--guest-threads must be 0...256 (0: an idle guest)") }
        guard (0...1).contains(writeRatio) else { throw ValidationError("--write-ratio must be between 0 and 1") }
        guard peerTimeout > 0 else { throw ValidationError("--peer-timeout must be positive") }
    }

    func run() throws {
        var configuration = DestinationConfiguration()
        configuration.arenaSize = try parseSize(arena)
        configuration.protection = protection.kind
        var guest = DestinationGuest.Configuration()
        guest.threads = guestThreads
        guest.pattern = pattern
        guest.writeRatio = writeRatio
        configuration.workload = { [guest] in DestinationGuest(configuration: guest) }
        configuration.peerTimeoutSeconds = peerTimeout
        configuration.busyPollMicros = busyPoll
        configuration.progress = { Console.err($0) }
        try runReportingErrors {
            configuration.key = try key.load(role: "destination")
            configuration.encrypt = key.encrypt
            configuration.source = try SocketAddress(parsing: connect)
            let agent = try DestinationAgent(configuration: configuration)
            _ = try runAgent(reportJson: reportJson, json: json, text: ReportFormatting.text, current: { agent.currentReport }) {
                try agent.run()
            }
            if let latencyHistogram { try ReportFormatting.write(agent.faultLatencyHistogram, toFile: latencyHistogram) }
        }
    }
}
