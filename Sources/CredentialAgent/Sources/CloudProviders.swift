import CloudAuth
import CredentialModel
import Foundation
import Synchronization

/// The identities of one agent, shared by all its credentials: one AWS credential chain (which
/// caches its keys), one Azure identity and one GCP identity. Calls to each provider's endpoints
/// go through a small concurrency limit, and identical token requests made together are merged
/// (see ``SharedTokens``).
public final class CloudProviders: Sendable {
    public let aws: AWSCredentialChain
    public let azure: AzureIdentity
    public let gcp: GCPIdentity
    /// The settings they were made from; a reload keeps these providers when they are unchanged.
    public let settings: Settings

    /// The provider sections of the config.
    public struct Settings: Sendable, Equatable {
        public var aws: AWSSettings
        public var azure: AzureSettings
        public var gcp: GCPSettings
    }

    /// How many requests to one provider's endpoints may be in flight at once.
    public static let concurrencyPerProvider = 4

    private let limiters: [CredentialProvider: ConcurrencyLimiter]
    private let tokens = SharedTokens()
    private let gcpEmail = Mutex<String?>(nil)

    public init(settings: Settings, http: any HTTPClient, environment: [String: String]) {
        self.settings = settings
        aws = AWSCredentialChain(settings: settings.aws, http: http, environment: environment)
        // One attempt per fetch: the refresher's backoff owns retrying, so that a failing endpoint
        // shows as a failed refresh at once instead of after the client's own retries.
        azure = AzureIdentity(settings: settings.azure, http: http, environment: environment,
                              retry: AzureRetryPolicy(maxAttempts: 1))
        gcp = GCPIdentity(settings: settings.gcp, http: http, environment: environment)
        limiters = Dictionary(uniqueKeysWithValues: CredentialProvider.allCases.map {
            ($0, ConcurrencyLimiter(limit: Self.concurrencyPerProvider))
        })
    }

    public convenience init(config: AgentConfig, http: any HTTPClient, environment: [String: String]) {
        self.init(settings: Settings(aws: config.aws, azure: config.azure, gcp: config.gcp), http: http,
                  environment: environment)
    }

    /// Runs `body` within `provider`'s concurrency limit.
    func limited<T: Sendable>(_ provider: CredentialProvider, _ body: () async throws -> T) async throws -> T {
        try await limiters[provider]!.run(body)
    }

    /// An Azure token for `resource`, shared with requests for the same resource made together.
    func azureToken(resource: String) async throws -> AccessToken {
        try await tokens.token(key: "azure \(resource)") { [azure, limiters] in
            try await limiters[.azure]!.run { try await azure.token(resource: resource) }
        }
    }

    /// A GCP access token for `scopes`, shared with requests for the same scopes made together.
    func gcpAccessToken(scopes: [String]) async throws -> AccessToken {
        try await tokens.token(key: "gcp \(scopes.joined(separator: " "))") { [gcp, limiters] in
            try await limiters[.gcp]!.run { try await gcp.accessToken(scopes: scopes) }
        }
    }

    /// The GCP service account's email, asked once.
    func gcpServiceAccountEmail() async throws -> String {
        if let known = gcpEmail.withLock({ $0 }) { return known }
        let email = try await limited(.gcp) { try await gcp.email() }
        gcpEmail.withLock { $0 = email }
        return email
    }
}
