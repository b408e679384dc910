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
/// failure (as far as it got), stdout gets it on success.
func runAgent<Report: Encodable>(
    reportJson: String?, json: Bool, text: (Report) -> String,
    current: () -> Report, _ run: () throws -> Report
) throws -> Report {
    let report: Report
    do { report = try run() } catch {
        if let reportJson { try? ReportFormatting.write(current(), toFile: reportJson) }
        throw error
    }
    if let reportJson { try ReportFormatting.write(report, toFile: reportJson) }
    Console.out(json ? ReportFormatting.json(report) : text(report))
    return report
}

func parseSize(_ text: String) throws -> Int {
    do { return try ByteSize(parsing: text).bytes } catch { throw ValidationError(error.description) }
}

extension BackendKind: ExpressibleByArgument {}
extension AccessPattern: ExpressibleByArgument {}

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
