import CloudAuth
import CloudEmulator
import Foundation
import Synchronization
import Testing

/// Runs `body` against a freshly started emulator and stops it afterwards, whatever happens.
func withEmulator<T>(_ configure: (inout CloudEmulator.Configuration) -> Void = { _ in },
                     _ body: (CloudEmulator) async throws -> T) async throws -> T {
    var configuration = CloudEmulator.Configuration()
    configure(&configuration)
    let emulator = try await CloudEmulator.start(configuration)
    do {
        let result = try await body(emulator)
        try await emulator.stop()
        return result
    } catch {
        try? await emulator.stop()
        throw error
    }
}

/// The text of a sample response under Fixtures/.
func fixture(_ path: String) throws -> String {
    let url = try #require(Bundle.module.resourceURL).appendingPathComponent("Fixtures/\(path)")
    return try String(contentsOf: url, encoding: .utf8)
}

/// A retry sleeper that records the delays it is asked for and returns at once.
final class RecordedDelays: Sendable {
    private let delays = Mutex<[Duration]>([])
    var recorded: [Duration] { delays.withLock { $0 } }
    var policy: AzureRetryPolicy {
        AzureRetryPolicy(sleep: { [self] delay in delays.withLock { $0.append(delay) } })
    }
}

/// The error `body` throws, as a CloudAuthError (failing the test if it throws none or another kind).
func cloudAuthError(_ body: () async throws -> some Any) async -> CloudAuthError? {
    do {
        _ = try await body()
        Issue.record("expected an error, got a value")
        return nil
    } catch let error as CloudAuthError {
        return error
    } catch {
        Issue.record("expected a CloudAuthError, got \(error)")
        return nil
    }
}

/// A scratch directory for files the tests write (key files, federated tokens).
func scratchDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "/credagent-azgcp-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
