// swift-tools-version: 6.0
// A post-copy live-migration memory agent: see README.md and docs/architecture.md.
import PackageDescription

let package = Package(
    name: "migrate-agent",
    products: [
        .executable(name: "migrate-agent", targets: ["migrate-agent"]),
        .library(name: "MigrateAgent", targets: ["MigrateAgent"]),
        .library(name: "Wire", targets: ["Wire"]),
        .library(name: "BackendContract", targets: ["BackendContract"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        // HMAC-SHA256 for the key proof between the agents.
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
    ],
    targets: [
        // The userfaultfd kernel ABI (constants newer than Debian's 6.1 headers, ioctl wrappers).
        .target(name: "CUffd"),
        // Volatile guest touches and atomic bytes the Swift optimiser must not elide.
        .target(name: "CGuestAccess"),
        // libuv, found through pkg-config (Debian: libuv1-dev).
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        // XXH3, the page hash both agents compute (Debian's libxxhash-dev).
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        // The wire protocol: no I/O; the page hash is XXH3-128.
        .target(name: "Wire", dependencies: ["CXXHash"]),
        .target(
            name: "MigrateAgent",
            dependencies: [
                "CUffd", "CGuestAccess", "CLibUV", "Wire",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The tools around the engine: they use only MigrateAgent's public API.
        // The synthetic guest: vCPU-like threads whose pages verify themselves; one workload among others.
        .target(
            name: "SyntheticGuest",
            dependencies: ["MigrateAgent", "CGuestAccess", .product(name: "Histogram", package: "hdrhistogram-swift")]
        ),
        // The protection-backend contract, run by `migrate-agent selftest` and by BackendContractTests.
        .target(name: "BackendContract", dependencies: ["MigrateAgent", "SyntheticGuest", "CUffd", "CGuestAccess"]),
        // `migrate-agent demo`: a source and a destination as child processes.
        .target(name: "MigrateDemo", dependencies: ["MigrateAgent", "SyntheticGuest", "CUffd"]),
        // `migrate-agent bench`: baselines, agent scenarios and the report.
        .target(
            name: "MigrateBench",
            dependencies: [
                "MigrateAgent", "SyntheticGuest", "MigrateDemo", "CUffd", "CGuestAccess", "Wire",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "migrate-agent",
            dependencies: [
                "MigrateAgent", "SyntheticGuest", "Wire", "BackendContract", "MigrateDemo", "MigrateBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A stand-in for Firecracker at snapshot load (no KVM here): a separate program that hands its
        // userfaultfd to a page-fault handler and checks every page. It links no part of the engine.
        .executableTarget(name: "stand-in-vmm", dependencies: ["CUffd", "CGuestAccess"], path: "Sources/StandInVMM"),
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        // stand-in-vmm: StandInVMMTests runs the binary built next to the test bundle.
        // Test helpers shared by the test targets (huge page reservations).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // MemberImportVisibility: a file sees the extensions of what it imports only, so a
        // file without Foundation calls the agents' own `String(format:)`, not Foundation's.
        .testTarget(name: "MigrateAgentTests", dependencies: ["TestSupport", "MigrateAgent", "SyntheticGuest", "CUffd", "Wire", "MigrateDemo", "stand-in-vmm"],
                    swiftSettings: [.enableUpcomingFeature("MemberImportVisibility")]),
        // The backend contract of BackendContract, once per backend the kernel offers.
        .testTarget(name: "BackendContractTests", dependencies: ["BackendContract", "MigrateAgent"]),
        // Runs the real migrate-agent binary as two processes on 127.0.0.1.
        .testTarget(
            name: "IntegrationTests", dependencies: ["TestSupport", "migrate-agent", "stand-in-vmm", "MigrateAgent", "SyntheticGuest", "MigrateDemo", "MigrateBench", "Wire"]),
    ]
)
