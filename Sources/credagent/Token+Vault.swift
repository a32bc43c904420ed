import ArgumentParser
import CloudAuth
import CredentialAgent
import CredentialModel
import Foundation
import Logging

/// `credagent token vault --config FILE NAME`: one Vault login with a configured credential's
/// cloud identity; prints the client token.
struct TokenVaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault",
        abstract: "Log in to Vault as a configured vault credential would, and print the token.")

    @Option(help: "The agent config file holding the credential.") var config: String
    @Argument(help: "The name of a credential of kind vault.") var name: String

    func run() async throws {
        let agentConfig: AgentConfig
        do {
            agentConfig = try AgentConfig.load(path: config)
        } catch {
            throw OneShot.usageError("\(error)")
        }
        guard let credential = agentConfig.credentials.first(where: { $0.name.rawValue == name }) else {
            let names = agentConfig.credentials.filter { $0.kind == .vault }.map(\.name.rawValue)
            throw OneShot.usageError("\(config) has no credential named '\(name)' (vault credentials: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
        }
        guard credential.kind == .vault else {
            throw OneShot.usageError("credential '\(name)' is of kind \(credential.kind.rawValue), not vault")
        }
        let http = CurlHTTPClient()
        let environment = ProcessInfo.processInfo.environment
        let factory = CredentialSourceFactory(
            providers: CloudProviders(config: agentConfig, http: http, environment: environment), http: http,
            environment: environment, logger: Logger(label: "credagent.token-vault", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await OneShot.emit(label: "vault login") {
            let source = try factory.make(credential)
            return try await source.fetch(now: Date()).secret.reveal()
        }
    }
}
