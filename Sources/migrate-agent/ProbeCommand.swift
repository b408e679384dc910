import ArgumentParser
import MigrateAgent

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe", abstract: "Print what the running kernel's userfaultfd offers and the backend the agent would pick.")

    @Flag(help: "Print JSON.") var json = false
    @Option(help: "Exit 1 unless the agent would pick this backend (rwp, minor or missing).")
    var expectBackend: BackendKind?

    func run() throws {
        let probe: KernelProbe
        do { probe = try KernelProbe.run() } catch {
            Console.err("error: \(error)")
            throw ExitCode(1)
        }
        show(probe)
        if let expectBackend, probe.backend != expectBackend {
            Console.err("error: expected the \(expectBackend.rawValue) backend, but kernel \(probe.kernelRelease) gives \(probe.backend.rawValue)")
            throw ExitCode(1)
        }
    }

    private func show(_ probe: KernelProbe) {
        if json { Console.out(ReportFormatting.json(probe)); return }
        func yes(_ b: Bool) -> String { b ? "yes" : "no" }
        Console.out("""
            kernel              \(probe.kernelRelease)
            userfaultfd         yes, opened with \(probe.openedBy)
            features            0x\(String(probe.featureBits, radix: 16)): \(probe.features.joined(separator: " "))
            shmem MISSING       \(yes(probe.shmemMissing))
            shmem MINOR         \(yes(probe.shmemMinor))
            WP async            \(yes(probe.writeProtectAsync))
            PAGEMAP_SCAN        \(yes(probe.pagemapScan))
            RWP (Linux 7.3)     \(yes(probe.readWriteProtect))
            backends available \(probe.availableBackends.map(\.rawValue).joined(separator: ", "))
            backend             \(probe.backend.rawValue)
            """)
    }
}
