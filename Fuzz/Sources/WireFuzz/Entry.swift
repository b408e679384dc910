import Wire

#if canImport(Glibc)
import Glibc
#endif

// libFuzzer's entry points. `-parse-as-library` keeps Swift from emitting a `main`;
// `-sanitize=fuzzer` links libFuzzer, which has one. SwiftPM, though, links every
// executable with `--defsym main=<Module>_main` (so tests can link executables), so the
// process starts in `WireFuzz_main` below, which hands over to libFuzzer's driver.

/// libFuzzer's driver (compiler-rt FuzzerInterface.h): parses the usual flags and fuzzes `callback`.
@_silgen_name("LLVMFuzzerRunDriver")
func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// The process entry point SwiftPM's `--defsym main=WireFuzz_main` names.
@_cdecl("WireFuzz_main")
public func wireFuzzMain(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    var argc = argc
    var argv = argv
    return llvmFuzzerRunDriver(&argc, &argv) { data, size in fuzzTestOneInput(data, size) }
}

/// One input: see `fuzzOne` (Invariants.swift).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    // libFuzzer may pass a null pointer for the empty input; the decoder sees an empty buffer.
    let bytes = UnsafeRawBufferPointer(start: size > 0 ? UnsafeRawPointer(data) : nil, count: size)
    fuzzOne(bytes)
    return 0
}

/// Before fuzzing: with `WIRE_FUZZ_WRITE_SEEDS=DIR`, writes the seed corpus to DIR and exits.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutableRawPointer?, _ argv: UnsafeMutableRawPointer?) -> Int32 {
    guard let dir = getenv("WIRE_FUZZ_WRITE_SEEDS").map({ String(cString: $0) }), !dir.isEmpty else { return 0 }
    mkdir(dir, 0o755)
    var written = 0
    for (name, bytes) in seedCorpus() {
        // Every seed must itself pass the harness.
        bytes.withUnsafeBytes { fuzzOne($0) }
        let path = dir + "/" + name
        guard let file = fopen(path, "wb") else {
            writeStderr("wire-fuzz: cannot write \(path)\n")
            exit(1)
        }
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        written += 1
    }
    print("wire-fuzz: wrote \(written) seeds to \(dir)")
    exit(0)
}
