import ArgumentParser
import CloudAuth
import Foundation

/// How one-shot identity commands report: the value alone on stdout; errors on stderr with exit 2
/// for usage and configuration, 1 for a failed fetch.
enum OneShot {
    /// Prints `message` to stderr and returns the exit code for a usage error.
    static func usageError(_ message: String) -> ExitCode {
        failure(message, exitCode: 2)
    }

    /// Prints `message` to stderr and returns `exitCode`.
    static func failure(_ message: String, exitCode: Int32) -> ExitCode {
        FileHandle.standardError.write(Data("credagent: \(message)\n".utf8))
        return ExitCode(exitCode)
    }

    /// Runs `fetch` and prints its result. With `benchmarkIterations`, first runs it that many
    /// times and reports the mean latency per fetch to stderr.
    static func emit(benchmarkIterations: Int? = nil, label: String,
                     _ fetch: @Sendable () async throws -> String) async throws {
        do {
            if let iterations = benchmarkIterations, iterations > 0 {
                let clock = ContinuousClock()
                let elapsed = try await clock.measure { for _ in 0..<iterations { _ = try await fetch() } }
                let microseconds = elapsed / .microseconds(1)
                FileHandle.standardError.write(Data(String(format: "%@: %d fetches, %.1f us/fetch\n",
                                                           label, iterations, microseconds / Double(iterations)).utf8))
            }
            print(try await fetch())
        } catch let error as CloudAuthError {
            FileHandle.standardError.write(Data("credagent: \(error)\n".utf8))
            throw ExitCode([.invalidInput, .configuration].contains(error.code) ? 2 : 1)
        }
    }
}
