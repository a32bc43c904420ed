import CloudAuth
import Foundation

/// Where the real peers that `scripts/test` starts are listening, read from the environment.
///
/// A test that needs a peer is enabled only when its variable is set, so that a bare `swift test`
/// skips it with the reason; `scripts/test` (and so CI) always starts every peer.
enum Peers {
    static func env(_ name: String) -> String? {
        let value = ProcessInfo.processInfo.environment[name]
        return value?.isEmpty == false ? value : nil
    }

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

/// What a finished child process printed and how it ended.
struct ProcessResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `executable` with `arguments` and an environment of exactly `environment` (plus PATH and
/// HOME), waits for it, and returns its output.
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                stdin: String? = nil) async throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = environment
    let inherited = ProcessInfo.processInfo.environment
    env["PATH"] = env["PATH"] ?? inherited["PATH"]
    env["HOME"] = env["HOME"] ?? inherited["HOME"]
    process.environment = env
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Reading the pipes and waiting block: do it on the blocking pool, never on the cooperative
    // threads that the tests running in parallel need.
    async let stdoutData = BlockingExecutor.shared.run { out.fileHandleForReading.readDataToEndOfFile() }
    async let stderrData = BlockingExecutor.shared.run { err.fileHandleForReading.readDataToEndOfFile() }
    let (o, e) = try await (stdoutData, stderrData)
    try await BlockingExecutor.shared.run { process.waitUntilExit() }
    return ProcessResult(status: process.terminationStatus,
                         stdout: String(decoding: o, as: UTF8.self),
                         stderr: String(decoding: e, as: UTF8.self))
}

/// Runs the `credagent` binary under test.
func runCredagent(_ arguments: [String], environment: [String: String] = [:]) async throws -> ProcessResult {
    try await runProcess(Peers.credagentBinary, arguments, environment: environment)
}
