import ArgumentParser
import MigrateAgent

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure fault latency against same-run baselines.")

    func run() throws {
        Console.err("error: the benchmark is not built yet")
        throw ExitCode(1)
    }
}
