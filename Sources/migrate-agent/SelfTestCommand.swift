import ArgumentParser
import MigrateAgent

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest", abstract: "Check a protection backend against the running kernel with real faults.")

    func run() throws {
        Console.err("error: selftest is not built yet")
        throw ExitCode(1)
    }
}
