import ArgumentParser
import MigrateAgent

/// `--psk-file PATH` or `--insecure`: every agent must say which, so that no
/// one runs without a key by accident.
struct KeyOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "File holding the pre-shared key both agents prove (at least 32 bytes, readable by its owner only).",
        discussion: "Make one with `migrate-agent keygen FILE` and copy it to the other host.", valueName: "path"))
    var pskFile: String?
    @Flag(help: "Run without a key: anyone who can reach the port can read the guest's memory.")
    var insecure = false
    @Flag(help: ArgumentHelp(
        "Encrypt every frame after the key proof (AES-256-GCM, keys derived per connection and direction).",
        discussion: "Needs --psk-file; the other agent must be started with --encrypt too, or the handshake is refused."))
    var encrypt = false

    func validate() throws {
        if encrypt && pskFile == nil {
            throw ValidationError(insecure
                ? "--encrypt needs a pre-shared key: it cannot be used with --insecure"
                : "--encrypt needs a pre-shared key: give --psk-file FILE (make one with `migrate-agent keygen FILE`)")
        }
        guard (pskFile != nil) != insecure else {
            throw ValidationError(insecure
                ? "--psk-file and --insecure exclude each other"
                : "a pre-shared key is required: give --psk-file FILE (make one with `migrate-agent keygen FILE`), "
                    + "or --insecure to let anyone who reaches the port read the guest's memory")
        }
    }

    /// The key, or nil with a loud warning under `--insecure`.
    func load(role: String) throws(AgentError) -> PresharedKey? {
        guard let pskFile else {
            Console.err("\(role): WARNING: running with --insecure: no key is proven, so anyone who can reach "
                + "this agent's port can read or feed the guest's memory")
            return nil
        }
        return try PresharedKey.load(path: pskFile)
    }
}

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Write a new random pre-shared key (32 bytes, mode 600) to a new file.")

    @Argument(help: "The file to create; an existing file is never overwritten.") var path: String

    func run() throws {
        try runReportingErrors { try PresharedKey.generate(path: path) }
    }
}
