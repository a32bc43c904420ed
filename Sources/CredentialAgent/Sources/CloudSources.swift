import CloudAuth
import CredentialModel
import Foundation
import Logging

/// RDS / Aurora PostgreSQL: an IAM auth token presigned with the agent's AWS keys.
struct AWSPostgresSource: CredentialSource {
    let host: String
    let port: Int
    let user: String
    let providers: CloudProviders

    func fetch(now: Date) async throws -> IssuedCredential {
        let (credentials, region) = try await providers.limited(.aws) {
            (try await providers.aws.credentials(), try await providers.aws.region())
        }
        let token = RDSAuthToken.make(host: host, port: port, user: user, region: region, credentials: credentials, at: now)
        return IssuedCredential(username: user, secret: token.token, issuedAt: token.issuedAt, expiresAt: token.expiresAt)
    }
}

/// ElastiCache / MemoryDB: an IAM auth token for the cache user.
struct AWSRedisSource: CredentialSource {
    let cacheName: String
    let user: String
    let serverless: Bool
    let engine: RedisEngine
    let providers: CloudProviders

    func fetch(now: Date) async throws -> IssuedCredential {
        let (credentials, region) = try await providers.limited(.aws) {
            (try await providers.aws.credentials(), try await providers.aws.region())
        }
        let service: ElastiCacheAuthToken.Service = engine == .memorydb ? .memorydb : .elasticache
        let token = ElastiCacheAuthToken.make(cacheName: cacheName, user: user, serverless: serverless, service: service,
                                              region: region, credentials: credentials, at: now)
        return IssuedCredential(username: user, secret: token.token, issuedAt: token.issuedAt, expiresAt: token.expiresAt)
    }
}

/// Azure Database for PostgreSQL / Azure Cache for Redis: an Entra token for the resource, used
/// as the password of the Entra principal named by `user`.
struct AzureTokenSource: CredentialSource {
    let resource: String
    let user: String?
    let providers: CloudProviders

    func fetch(now: Date) async throws -> IssuedCredential {
        let token = try await providers.azureToken(resource: resource)
        return IssuedCredential(username: user, secret: token.token, issuedAt: token.issuedAt, expiresAt: token.expiresAt,
                                refreshAfter: token.refreshAfter, expiresByLocalClock: token.expiresByLocalClock)
    }
}

/// Cloud SQL (IAM database authentication) and Memorystore: a Google access token as the
/// password. Cloud SQL's user defaults to the service account's IAM database user.
struct GCPTokenSource: CredentialSource {
    /// The scope Cloud SQL IAM login needs.
    static let sqlLoginScope = "https://www.googleapis.com/auth/sqlservice.login"

    let scopes: [String]
    let user: String?
    /// Derive the user from the service account when `user` is nil (Cloud SQL).
    let deriveCloudSQLUser: Bool
    let providers: CloudProviders

    func fetch(now: Date) async throws -> IssuedCredential {
        let token = try await providers.gcpAccessToken(scopes: scopes)
        var username = user
        if username == nil, deriveCloudSQLUser {
            username = GCPIdentity.cloudSQLUser(email: try await providers.gcpServiceAccountEmail())
        }
        return IssuedCredential(username: username, secret: token.token, issuedAt: token.issuedAt, expiresAt: token.expiresAt,
                                refreshAfter: token.refreshAfter, expiresByLocalClock: token.expiresByLocalClock)
    }
}

/// Makes the source for each configured credential.
public struct CredentialSourceFactory: Sendable {
    public let providers: CloudProviders
    public let http: any HTTPClient
    public let environment: [String: String]
    public let logger: Logger

    public init(providers: CloudProviders, http: any HTTPClient,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                logger: Logger = Logger(label: "credagent", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.providers = providers
        self.http = http
        self.environment = environment
        self.logger = logger
    }

    /// The source for `config`; throws a configuration error when this build cannot serve it.
    public func make(_ config: CredentialConfig) throws -> any CredentialSource {
        switch config.target {
        case let .postgres(target):
            switch target.login {
            case let .aws(login):
                return AWSPostgresSource(host: target.connection.host, port: target.connection.port, user: login.user,
                                         providers: providers)
            case let .azure(login):
                return AzureTokenSource(resource: login.resource ?? AzureResource.postgres, user: login.user, providers: providers)
            case let .gcp(user):
                return GCPTokenSource(scopes: [GCPTokenSource.sqlLoginScope], user: user, deriveCloudSQLUser: true,
                                      providers: providers)
            }
        case let .redis(target):
            switch target.login {
            case let .aws(login):
                return AWSRedisSource(cacheName: login.cacheName, user: login.user, serverless: login.serverless,
                                      engine: login.engine, providers: providers)
            case let .azure(login):
                return AzureTokenSource(resource: login.resource ?? AzureResource.redis, user: login.user, providers: providers)
            case let .gcp(user):
                return GCPTokenSource(scopes: [GCPIdentity.cloudPlatformScope], user: user, deriveCloudSQLUser: false,
                                      providers: providers)
            }
        case let .vault(target):
            return try makeVaultSource(target, name: config.name)
        }
    }

    /// The Vault source: a login with the provider's identity, renewed while Vault allows.
    private func makeVaultSource(_ target: CredentialTarget.Vault, name: CredentialName) throws -> any CredentialSource {
        let identity: VaultIdentity = switch target.provider {
        case .aws: .aws(providers.aws)
        case .azure: .azure(providers.azure)
        case .gcp: .gcp(providers.gcp)
        }
        let login = try VaultLogin(method: target.method, role: target.role, serverID: target.serverID,
                                   audience: target.audience, identity: identity, http: http, environment: environment)
        let connection = target.connection
        let endpoint = VaultEndpoint(address: connection.address, namespace: connection.namespace,
                                     tls: TLSOptions(caFile: connection.caFile, serverName: connection.tlsServerName))
        var logger = logger
        logger[metadataKey: "credential"] = "\(name)"
        return VaultCredentialSource(client: VaultClient(endpoint: endpoint, http: http), login: login,
                                     mount: target.mount, revokeOnShutdown: target.revokeOnShutdown, logger: logger)
    }
}
