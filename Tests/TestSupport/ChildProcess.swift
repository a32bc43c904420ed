import Foundation
import Subprocess
import SystemPackage

/// What a finished child process printed and how it ended.
public struct ProcessResult: Sendable {
    /// The exit status, or 128 + the signal number for a process killed by a signal (as a shell
    /// reports it).
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Child processes for tests: peers' clients (python3 with botocore/boto3, psql, the built
/// `credagent`), run to completion with their output captured, on swift-subprocess (which feeds
/// the input and reads both outputs concurrently, off the cooperative threads).
public enum ChildProcess {
    /// The most output a test's child may print on one stream; more fails the run.
    public static let outputLimit = 64 * 1024 * 1024

    /// Runs `executable` with `arguments`, feeding `stdin`, and waits for it. `environment` nil
    /// inherits the test's environment; otherwise exactly `environment` plus PATH, HOME and
    /// the sanitizers' LSAN_OPTIONS and TSAN_OPTIONS.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           stdin: Data = Data()) async throws -> ProcessResult {
        let result = try await Subprocess.run(
            .path(FilePath(executable)), arguments: Arguments(arguments), environment: childEnvironment(environment),
            input: .data(stdin), output: .string(limit: outputLimit), error: .string(limit: outputLimit))
        let status: Int32 = switch result.terminationStatus {
        case let .exited(code): code
        case let .signaled(signal): 128 + signal
        }
        return ProcessResult(status: status, stdout: result.standardOutput, stderr: result.standardError)
    }

    /// Runs `python3` with `arguments` (a script and its arguments, or `-c CODE`).
    public static func python(_ arguments: [String], environment: [String: String]? = nil,
                              stdin: Data = Data()) async throws -> ProcessResult {
        try await run("/usr/bin/env", ["python3"] + arguments, environment: environment, stdin: stdin)
    }

    /// Whether `python3` can import every one of `modules`; for `.enabled(if:)` conditions.
    public static func pythonHas(_ modules: String...) async -> Bool {
        (try? await python(["-c", "import " + modules.joined(separator: ", ")]).status) == 0
    }

    /// The repository's root, found from this file's path.
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    private static func childEnvironment(_ environment: [String: String]?) -> Subprocess.Environment {
        guard var environment else { return .inherit }
        let inherited = ProcessInfo.processInfo.environment
        environment["PATH"] = environment["PATH"] ?? inherited["PATH"]
        environment["HOME"] = environment["HOME"] ?? inherited["HOME"]
        // A sanitizer run's options and suppressions (scripts/test --sanitize).
        for name in ["LSAN_OPTIONS", "TSAN_OPTIONS"] { environment[name] = environment[name] ?? inherited[name] }
        return .custom(Dictionary(uniqueKeysWithValues: environment.map { (Subprocess.Environment.Key(rawValue: $0.key)!, $0.value) }))
    }
}
