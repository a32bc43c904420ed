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
