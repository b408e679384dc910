// swift-tools-version: 6.0
// A libFuzzer harness for the wire decoder and the handshake (Sources/Wire). A package of
// its own so that `swift build` / `swift test` of the main package never see it: it needs
// `-sanitize=fuzzer`, which links libFuzzer's own `main`. See README.md here.
import PackageDescription

let package = Package(
    name: "wire-fuzz",
    dependencies: [
        // Only the Wire product is used, so only Wire is compiled (with the fuzzer's
        // coverage instrumentation); the main package's other dependencies are resolved, not built.
        .package(name: "migrate-agent", path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "WireFuzz",
            dependencies: [.product(name: "Wire", package: "migrate-agent")]
        ),
    ]
)
