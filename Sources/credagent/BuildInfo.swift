import CBuildInfo
#if canImport(Glibc)
import Glibc
#endif

/// What this binary is: the version and commit scripts/build embedded ("development" and
/// "unknown" in any other build), and how it was built.
struct BuildInfo: Sendable {
    var version: String
    var commit: String
    /// `release` or `debug`.
    var configuration: String
    /// Whether the Swift runtime is linked into the executable rather than loaded from shared
    /// libraries (`--static-swift-stdlib`, as scripts/build links it).
    var staticSwiftRuntime: Bool

    /// This process's binary.
    static let current = BuildInfo(
        version: String(cString: credagent_build_version()),
        commit: String(cString: credagent_build_commit()),
        configuration: debugBuild ? "debug" : "release",
        staticSwiftRuntime: !sharedSwiftRuntimeLoaded())

    /// `release, static Swift runtime`.
    var kind: String {
        "\(configuration), \(staticSwiftRuntime ? "static" : "shared") Swift runtime"
    }

    /// One line, for `credagent --version`.
    var line: String { "credagent \(version) (commit \(commit), \(kind))" }

    /// Aligned `name: value` lines, for `credagent version`.
    var lines: String {
        ["version: \(version)", "commit:  \(commit)", "build:   \(kind)"].joined(separator: "\n")
    }

    private static var debugBuild: Bool {
        #if DEBUG
        true
        #else
        false
        #endif
    }

    /// Whether the dynamic loader has the shared Swift runtime loaded into this process.
    private static func sharedSwiftRuntimeLoaded() -> Bool {
        #if os(Linux)
        guard let handle = dlopen("libswiftCore.so", RTLD_NOLOAD | RTLD_LAZY) else { return false }
        dlclose(handle)
        return true
        #else
        return true
        #endif
    }
}
