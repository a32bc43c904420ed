import CloudAuth
import Foundation

/// What a finished child process printed and how it ended.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Child processes for tests: peers' clients (python3 with botocore/boto3, psql, the built
/// `credagent`), run to completion with their output captured.
public enum ChildProcess {
    /// Runs `executable` with `arguments`, feeding `stdin`, and waits for it. `environment` nil
    /// inherits the test's environment; otherwise exactly `environment` plus PATH and HOME.
    /// Reading the pipes and waiting block: they run on the blocking pool, never on the
    /// cooperative threads that tests running in parallel need.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           stdin: Data = Data()) async throws -> ProcessResult {
        let (process, input, out, err) = try launch(executable, arguments, environment: environment)
        // Fed while the output is read: a child that reads all its input before writing, or writes
        // much before reading, cannot deadlock with the test. A child that exits early ends the feed.
        async let fed: Void = BlockingExecutor.shared.run {
            try? input.fileHandleForWriting.write(contentsOf: stdin)
            try? input.fileHandleForWriting.close()
        }
        async let stdoutData = BlockingExecutor.shared.run { out.fileHandleForReading.readDataToEndOfFile() }
        async let stderrData = BlockingExecutor.shared.run { err.fileHandleForReading.readDataToEndOfFile() }
        let (_, o, e) = try await (fed, stdoutData, stderrData)
        try await BlockingExecutor.shared.run { process.waitUntilExit() }
        return ProcessResult(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                             stderr: String(decoding: e, as: UTF8.self))
    }

    /// ``run(_:_:environment:stdin:)`` for the places that need an answer synchronously: test
    /// traits such as `.enabled(if:)`, evaluated before any test runs. Output must be small (pipe buffer).
    public static func runSynchronously(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
        let (process, input, out, err) = try launch(executable, arguments, environment: nil)
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus,
                             stdout: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                             stderr: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    /// Runs `python3` with `arguments` (a script and its arguments, or `-c CODE`).
    public static func python(_ arguments: [String], environment: [String: String]? = nil,
                              stdin: Data = Data()) async throws -> ProcessResult {
        try await run("/usr/bin/env", ["python3"] + arguments, environment: environment, stdin: stdin)
    }

    /// Whether `python3` can import every one of `modules`.
    public static func pythonHas(_ modules: String...) -> Bool {
        (try? runSynchronously("/usr/bin/env", ["python3", "-c", "import " + modules.joined(separator: ", ")]).status) == 0
    }

    /// The repository's root, found from this file's path.
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// A write to a child that has exited must fail with EPIPE, not end the test process.
    private static let pipeSignalIgnored: Void = { signal(SIGPIPE, SIG_IGN) }()

    private static func launch(_ executable: String, _ arguments: [String],
                               environment: [String: String]?) throws -> (Process, input: Pipe, out: Pipe, err: Pipe) {
        _ = pipeSignalIgnored
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if var env = environment {
            let inherited = ProcessInfo.processInfo.environment
            env["PATH"] = env["PATH"] ?? inherited["PATH"]
            env["HOME"] = env["HOME"] ?? inherited["HOME"]
            process.environment = env
        }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        return (process, input, out, err)
    }
}
