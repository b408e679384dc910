import ArgumentParser
import Glibc
import MigrateAgent
import SyntheticGuest
import MigrateDemo

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Migrate a guest between a source and a destination process on 127.0.0.1 and report.")

    @Option(help: "Guest memory size.") var arena = "256MiB"
    @Option(help: "Destination guest threads.") var guestThreads = 4
    @Option(help: "Guest access pattern: sequential, random or hotset.") var pattern = AccessPattern.random
    @Option(help: "Protection backend: rwp, minor, missing or auto.") var protection = ProtectionOption(argument: "auto")!
    @Option(help: "Pre-copy rounds while the guest still runs on the source (0: pure post-copy).") var precopyRounds = 0
    @Option(help: "Pages per second the source's guest writes until switch-over.") var dirtyRate = 20_000
    @Option(help: "Fraction of destination guest accesses that also write.") var writeRatio = 0.2
    @Option(help: "Seconds before the demo gives up.") var timeout = 300.0
    @Option(help: "Before switch-over, the source tracks its guest's accesses this many seconds (source --track-seconds; 0: off).")
    var trackSeconds = 0.0
    @Option(help: "The source guest's read pattern meanwhile (source --guest-pattern): sequential, random or hotset. Default: it only writes.")
    var sourcePattern: AccessPattern?
    @Flag(inversion: .prefixedNo, help: "With --track-seconds: the pages found hot go first (off: address order).")
    var hotFirst = true
    @Flag(help: "Both agents encrypt their connections (--encrypt).") var encrypt = false
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        try checkRange(guestThreads, "--guest-threads", in: OptionBounds.destinationGuestThreads)
        try checkRange(precopyRounds, "--precopy-rounds", in: OptionBounds.precopyRounds)
        try checkRange(dirtyRate, "--dirty-rate", in: OptionBounds.dirtyRate)
        try checkFraction(writeRatio, "--write-ratio")
        try checkSeconds(timeout, "--timeout", in: OptionBounds.runTimeoutSeconds)
        try checkSeconds(trackSeconds, "--track-seconds", in: OptionBounds.trackSeconds)
    }

    func run() throws {
        var configuration = DemoRunner.Configuration(executable: AgentProcess.currentExecutable)
        configuration.arenaSize = try parseSize(arena)
        configuration.guestThreads = guestThreads
        configuration.pattern = pattern
        configuration.protection = protection.kind
        configuration.timeoutSeconds = timeout
        configuration.precopyRounds = precopyRounds
        configuration.dirtyRate = dirtyRate
        configuration.writeRatio = writeRatio
        configuration.encrypt = encrypt
        configuration.trackSeconds = trackSeconds
        configuration.sourcePattern = sourcePattern
        configuration.hotFirst = hotFirst
        configuration.progress = { Console.err($0) }
        try runReportingErrors {
            let report = try DemoRunner(configuration: configuration).run()
            Console.out(json ? ReportFormatting.json(report) : DemoRunner.text(report))
            if let error = report.error { Console.err("error: \(error)") }
            // Interrupted: end by the same signal (agents stopped, files removed), as a shell expects.
            if let signal = report.interruptedBySignal { Glibc.signal(signal, SIG_DFL); raise(signal) }
            if !report.succeeded { throw ExitCode(1) }
        }
    }
}
