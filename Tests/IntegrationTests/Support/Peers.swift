import Foundation
import TestSupport

/// Where the real peers that `scripts/test` starts are listening, read from the environment.
///
/// A test that needs a peer is enabled only when its variable is set, so that a bare `swift test`
/// skips it with the reason; `scripts/test` (and so CI) always starts every peer.
enum Peers {
    static func env(_ name: String) -> String? {
        let value = ProcessInfo.processInfo.environment[name]
        return value?.isEmpty == false ? value : nil
    }

    /// The sanitizer the binaries under test were built with (`scripts/test --sanitize thread|address`).
    static var sanitizer: String? { env("CREDAGENT_TEST_SANITIZER") }

    /// How many times longer a time limit of a test is: 4 under a sanitizer, whose
    /// instrumentation slows every process several times over; 1 otherwise.
    static var timeScale: Double { sanitizer == nil ? 1 : 4 }

    /// moto's server (STS and IMDS, signatures checked): `http://127.0.0.1:PORT`.
    static var moto: String? { env("CREDAGENT_TEST_MOTO") }

    /// The `credagent` binary under test.
    static var credagentBinary: String {
        env("CREDAGENT_BINARY") ?? FileManager.default.currentDirectoryPath + "/.build/debug/credagent"
    }

    /// A private scratch directory under the test run's directory.
    static func scratchDirectory(_ label: String) throws -> String {
        let base = env("CREDAGENT_TEST_RUN_DIR") ?? NSTemporaryDirectory()
        let path = base + "/\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// Runs the `credagent` binary under test.
func runCredagent(_ arguments: [String], environment: [String: String] = [:]) async throws -> ProcessResult {
    try await ChildProcess.run(Peers.credagentBinary, arguments, environment: environment)
}
