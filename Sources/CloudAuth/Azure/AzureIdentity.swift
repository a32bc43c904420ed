import Foundation

/// Azure tokens for the identity this process runs as, from the first source that applies, in
/// azure-identity's order: AKS workload identity (`AZURE_FEDERATED_TOKEN_FILE`), then the App
/// Service / Functions / Container Apps identity endpoint (`IDENTITY_ENDPOINT` +
/// `IDENTITY_HEADER`), then the VM's Instance Metadata Service.
///
/// Nothing is cached: each call asks the source (the agent's refresher decides when).
public final class AzureIdentity: Sendable {
    /// Where tokens come from, decided once from settings and environment.
    public enum Source: Sendable, Equatable {
        case workloadIdentity(tokenFile: String, clientID: String, tenantID: String, authorityHost: String)
        case appService(endpoint: String)
        case imds(endpoint: String)
    }

    private let selection: Result<Source, CloudAuthError>
    private let settings: AzureSettings
    private let http: any HTTPClient
    private let environment: [String: String]
    private let retry: AzureRetryPolicy
    private let clock: @Sendable () -> Date

    /// The IMDS address on every Azure VM.
    public static let defaultIMDSEndpoint = "http://169.254.169.254"
    /// Entra ID's public-cloud authority.
    public static let defaultAuthorityHost = "https://login.microsoftonline.com"

    /// Picks the source from `settings` and `environment` (normally the process environment).
    /// A half-configured workload identity is reported by every later call.
    public init(settings: AzureSettings, http: any HTTPClient, environment: [String: String],
                retry: AzureRetryPolicy = .standard, clock: @escaping @Sendable () -> Date = Date.init) {
        self.settings = settings
        self.http = http
        self.environment = environment
        self.retry = retry
        self.clock = clock
        self.selection = Result { try Self.selectSource(settings: settings, environment: environment) }
            .mapError { $0 as? CloudAuthError ?? CloudAuthError(.configuration, source: "azure", "\($0)") }
    }

    /// The source tokens come from, or the configuration error that prevents choosing one.
    public func source() throws -> Source { try selection.get() }

    private static func imdsBase(settings: AzureSettings, environment: [String: String]) -> String {
        let fromEnvironment = environment["IMDS_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
        var imds = settings.imdsEndpoint ?? fromEnvironment ?? defaultIMDSEndpoint
        while imds.hasSuffix("/") { imds.removeLast() }
        return imds
    }

    private static func selectSource(settings: AzureSettings, environment: [String: String]) throws -> Source {
        func value(_ name: String) -> String? {
            guard let value = environment[name], !value.isEmpty else { return nil }
            return value
        }
        if let tokenFile = value("AZURE_FEDERATED_TOKEN_FILE") {
            let missing = [
                (settings.clientID ?? value("AZURE_CLIENT_ID")) == nil ? "AZURE_CLIENT_ID (or azure.client_id)" : nil,
                (settings.tenantID ?? value("AZURE_TENANT_ID")) == nil ? "AZURE_TENANT_ID (or azure.tenant_id)" : nil,
            ].compactMap { $0 }
            guard missing.isEmpty, let clientID = settings.clientID ?? value("AZURE_CLIENT_ID"),
                  let tenantID = settings.tenantID ?? value("AZURE_TENANT_ID") else {
                throw CloudAuthError(.configuration, source: "env AZURE_FEDERATED_TOKEN_FILE",
                                     "workload identity is enabled but \(missing.joined(separator: " and ")) is not set",
                                     remedy: "label the pod azure.workload.identity/use=true with a service account that names the client id")
            }
            var authority = value("AZURE_AUTHORITY_HOST") ?? defaultAuthorityHost
            while authority.hasSuffix("/") { authority.removeLast() }
            return .workloadIdentity(tokenFile: tokenFile, clientID: clientID, tenantID: tenantID, authorityHost: authority)
        }
        if let endpoint = value("IDENTITY_ENDPOINT"), value("IDENTITY_HEADER") != nil {
            return .appService(endpoint: endpoint)
        }
        return .imds(endpoint: imdsBase(settings: settings, environment: environment))
    }

    /// A token for `resource` (an ``AzureResource`` constant or any resource URI).
    public func token(resource: String) async throws -> AccessToken {
        guard !resource.isEmpty else {
            throw CloudAuthError(.invalidInput, source: "azure resource", "the resource is empty",
                                 remedy: "name the service, e.g. \(AzureResource.postgres)")
        }
        switch try source() {
        case let .workloadIdentity(tokenFile, clientID, tenantID, authorityHost):
            let exchange = WorkloadIdentityExchange(tokenFile: tokenFile, clientID: clientID, tenantID: tenantID,
                                                    authorityHost: authorityHost)
            return try await exchange.token(resource: resource, http: http, retry: retry, now: clock)
        case let .appService(endpoint):
            return try await managedIdentityToken(ManagedIdentityRequest.appService(
                endpoint: endpoint, secret: environment["IDENTITY_HEADER"] ?? "", resource: resource, settings: settings))
        case let .imds(endpoint):
            return try await managedIdentityToken(ManagedIdentityRequest.imds(
                endpoint: endpoint, resource: resource, settings: settings))
        }
    }

    private func managedIdentityToken(_ request: ManagedIdentityRequest) async throws -> AccessToken {
        let response = try await retry.execute(http, retrying: AzureRetryPolicy.managedIdentityStatuses) {
            try request.httpRequest()
        }
        return try request.parse(response, now: clock())
    }

    /// The VM facts Vault's azure auth method needs, from IMDS's instance metadata.
    public func instanceMetadata() async throws -> AzureInstanceMetadata {
        let url = "\(Self.imdsBase(settings: settings, environment: environment))/metadata/instance?api-version=2021-02-01"
        let source = "Azure IMDS \(EndpointURL.stripQuery(url))"
        let response = try await retry.execute(http, retrying: AzureRetryPolicy.managedIdentityStatuses) {
            HTTPRequest(url: url, headers: ["Metadata": "true"], timeouts: .metadata)
        }
        guard response.isSuccess else { throw TokenEndpoint.failure(response, source: source) }
        return try AzureInstanceMetadata(parsing: response.body, source: source)
    }
}
