import ArgumentParser
import MigrateAgent
import SyntheticGuest

@main
struct MigrateAgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-agent",
        abstract: "Post-copy live migration of guest memory over TCP, with real userfaultfd.",
        subcommands: [ProbeCommand.self, SourceCommand.self, DestinationCommand.self, KeygenCommand.self, DemoCommand.self,
                      BenchCommand.self, SelfTestCommand.self]
    )
}

/// Runs `body`; an `AgentError` becomes one `error:` line on stderr and exit status 1.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as AgentError {
        Console.err("error: \(error)")
        throw ExitCode(1)
    }
}

/// Runs an agent and reports: the JSON file gets the report also after a
/// failure (as far as it got), stdout gets it on success. When the file
/// cannot be written (the path was checked before the migration, but a disk
/// can fill or a directory vanish), the JSON goes to stdout instead with a
/// warning on stderr, and the exit status still tells the migration's
/// outcome: a migration that succeeded exits 0 (README, "The command").
func runAgent<Report: Encodable>(
    reportJson: String?, json: Bool, text: (Report) -> String,
    current: () -> Report, _ run: () throws -> Report
) throws -> Report {
    let report: Report
    do { report = try run() } catch {
        if let reportJson, !writeOrWarn(current(), toFile: reportJson) { Console.out(ReportFormatting.json(current())) }
        throw error
    }
    if let reportJson, !writeOrWarn(report, toFile: reportJson) {
        Console.out(ReportFormatting.json(report))
    } else {
        Console.out(json ? ReportFormatting.json(report) : text(report))
    }
    return report
}

/// Writes `value` as JSON to `path`; on failure prints one `warning:` line and returns false.
@discardableResult
func writeOrWarn<T: Encodable>(_ value: T, toFile path: String, what: String = "the report") -> Bool {
    do throws(AgentError) {
        try ReportFormatting.write(value, toFile: path)
        return true
    } catch {
        Console.err("warning: \(error); \(what == "the report" ? "it is printed on stdout as JSON instead" : "it is lost")")
        return false
    }
}

/// Refuses, with one `error:` line naming the path, a file option whose file cannot be written.
func checkWritable(_ path: String?, what: String = "the report") throws(AgentError) {
    if let path { try ReportFormatting.checkWritable(path, what: what) }
}

func parseSize(_ text: String) throws -> Int {
    do { return try ByteSize(parsing: text).bytes } catch { throw ValidationError(error.description) }
}

extension BackendKind: ExpressibleByArgument {}
extension AccessPattern: ExpressibleByArgument {}
extension InstallThreadUse: ExpressibleByArgument {}

/// `--protection rwp|minor|missing|auto`.
struct ProtectionOption: ExpressibleByArgument {
    let kind: BackendKind?
    init?(argument: String) {
        if argument == "auto" { kind = nil } else if let k = BackendKind(rawValue: argument) { kind = k } else { return nil }
    }
    static var allValueStrings: [String] { BackendKind.allCases.map(\.rawValue) + ["auto"] }
    /// What `--help` shows as the default: the argument text, not the Swift value.
    var defaultValueDescription: String { kind?.rawValue ?? "auto" }
}
