// swift-tools-version: 6.2
import PackageDescription

/// Settings every Swift target shares: strict language mode 6 and the upcoming features that keep
/// C modules and existentials from leaking into public API.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// How the release `credagent` executable is linked on Linux: with lld, which lays the functions
/// named in `link/credagent.order` (what the sidecar runs; `scripts/link-order` regenerates it)
/// side by side, and packs relative relocations (the binary then needs glibc 2.36 or later). The
/// kernel maps code 64 KB around each page touched, so packing the run path together is what keeps
/// the idle RSS low; see docs/OPERATIONS.md, "Memory footprint". The C++ runtime and libgcc are
/// linked in statically (`link/static-libstdc++`), which takes their loading out of every start-up.
/// Debug builds link as usual.
let sidecarLinkerSettings: [LinkerSetting] = [
    .unsafeFlags([
        "-use-ld=lld",
        "-L", "\(Context.packageDirectory)/link/static-libstdc++",
        "-Xclang-linker", "-static-libgcc",
        "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
        "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/link/credagent.order",
        "-Xlinker", "--no-warn-symbol-ordering",
        "-Xlinker", "--no-export-dynamic",
    ], .when(platforms: [.linux], configuration: .release)),
]

let package = Package(
    name: "credagent",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "credagent", targets: ["credagent"]),
        .library(name: "CloudAuth", targets: ["CloudAuth"]),
        .library(name: "CredentialModel", targets: ["CredentialModel"]),
        .library(name: "CredentialAgent", targets: ["CredentialAgent"]),
        .library(name: "Connectivity", targets: ["Connectivity"]),
        .library(name: "AuthProxy", targets: ["AuthProxy"]),
        .library(name: "CloudEmulator", targets: ["CloudEmulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        // C libraries. None is linked: their headers are in the compiler's search path
        // (scripts/bootstrap installs the -dev packages), and the functions credagent calls are
        // defined in CDeferredLibraries, which loads each library on its first use (see
        // Sources/CDeferredLibraries/include/deferred_library.h).
        .systemLibrary(name: "COpenSSL"),
        .systemLibrary(name: "CCurl"),
        .systemLibrary(name: "CLibPQ"),
        .systemLibrary(name: "CHiredis"),
        .target(name: "CDeferredLibraries", dependencies: ["COpenSSL", "CCurl", "CLibPQ", "CHiredis"]),
        // The version and commit scripts/build embeds (see Sources/CBuildInfo/build_info.c).
        .target(name: "CBuildInfo"),

        .target(
            name: "CloudAuth",
            dependencies: [
                "CCurl", "CDeferredLibraries", "COpenSSL",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // A credential's config entry, its served JSON and names: shared by the agent, its client,
        // the connectivity checks and the CLI.
        .target(
            name: "CredentialModel",
            dependencies: ["CloudAuth"],
            swiftSettings: swiftSettings
        ),
        // Local listeners that relay clients to a database over a connection the proxy
        // authenticates with the credential's current token.
        .target(
            name: "AuthProxy",
            dependencies: [
                "CloudAuth", "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CredentialAgent",
            dependencies: [
                "CloudAuth", "CredentialModel", "AuthProxy",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Connectivity",
            dependencies: ["CloudAuth", "CredentialModel", "CLibPQ", "CHiredis", "CDeferredLibraries", "COpenSSL"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CloudEmulator",
            dependencies: [
                "CloudAuth",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "credagent",
            dependencies: [
                "CloudAuth", "CredentialModel", "CredentialAgent", "Connectivity", "CloudEmulator", "CBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sidecarLinkerSettings
        ),

        // Fuzzing harnesses for everything that parses outside input (scripts/fuzz). Built with
        // libFuzzer there; built plainly, it replays the committed corpora (a regression test).
        .executableTarget(
            name: "credagent-fuzz",
            dependencies: [
                "AuthProxy", "CloudAuth", "CredentialAgent", "Connectivity",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Fuzz/Sources",
            swiftSettings: swiftSettings + [.unsafeFlags(["-parse-as-library"])]
        ),

        // Child processes for the test targets (peers' clients, the oracle scripts, the binary) and their async cleanup.
        .target(
            name: "TestSupport",
            dependencies: [
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CloudAuthTests",
            dependencies: ["CloudAuth", "CloudEmulator", "TestSupport"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CredentialAgentTests",
            dependencies: [
                "CredentialAgent", "CredentialModel", "CloudAuth", "CloudEmulator",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CredentialModelTests",
            dependencies: ["CredentialModel", "CloudAuth"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AuthProxyTests",
            dependencies: [
                "AuthProxy", "CloudAuth", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ConnectivityTests",
            dependencies: ["Connectivity", "CredentialModel", "CloudAuth", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CloudEmulatorTests",
            dependencies: ["CloudEmulator", "CloudAuth", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        // Runs the built `credagent` binary against the real peers that scripts/test starts.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["CloudAuth", "CredentialModel", "CredentialAgent", "Connectivity", "CloudEmulator", "TestSupport", "AuthProxy",
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
    ]
)
