import ArgumentParser
import CloudAuth
import Foundation

/// `credagent token azure`: an Entra access token from this machine's managed identity (workload
/// identity, App Service or IMDS, in azure-identity's order).
struct TokenAzureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "azure",
        abstract: "Print an Azure access token for --resource from the managed identity.",
        discussion: "Resource short names: postgres, redis, management. Sources: AZURE_FEDERATED_TOKEN_FILE "
            + "(+ AZURE_CLIENT_ID, AZURE_TENANT_ID), IDENTITY_ENDPOINT + IDENTITY_HEADER, else IMDS (IMDS_ENDPOINT).")

    @Option(help: "Resource URI (or postgres, redis, management).") var resource: String?
    @Option(help: "Client id of a user-assigned identity.") var clientID: String?
    @Option(help: .hidden) var benchmarkIterations: Int?

    func run() async throws {
        guard let resource, !resource.isEmpty else { throw OneShot.usageError("--resource is required (e.g. --resource postgres)") }
        let identity = AzureIdentity(settings: AzureSettings(clientID: clientID), http: CurlHTTPClient(),
                                     environment: ProcessInfo.processInfo.environment)
        let uri = AzureResource.named(resource)
        try await OneShot.emit(benchmarkIterations: benchmarkIterations, label: "azure token") {
            try await identity.token(resource: uri).token.reveal()
        }
    }
}

/// How one-shot identity commands report: the value alone on stdout; errors on stderr with exit 2
/// for usage and configuration, 1 for a failed fetch.
enum OneShot {
    /// Prints `message` to stderr and returns the exit code for a usage error.
    static func usageError(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("credagent: \(message)\n".utf8))
        return ExitCode(2)
    }

    /// Runs `fetch` and prints its result. With `benchmarkIterations`, first runs it that many
    /// times and reports the mean latency per fetch to stderr.
    static func emit(benchmarkIterations: Int? = nil, label: String,
                     _ fetch: @Sendable () async throws -> String) async throws {
        do {
            if let iterations = benchmarkIterations, iterations > 0 {
                let clock = ContinuousClock()
                let elapsed = try await clock.measure { for _ in 0..<iterations { _ = try await fetch() } }
                let microseconds = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
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
