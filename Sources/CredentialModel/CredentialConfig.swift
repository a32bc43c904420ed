import CloudAuth

/// One entry of the config's `credentials:` list: its name and what it is for, with every field
/// its kind and provider need and none they do not.
///
/// Only the config parser builds these from a file; a value is valid by construction, so nothing
/// that uses it checks it again. To add a field: add it to the target (or, when clients see it,
/// to its ``CredentialConnection``), read it in the config parser, use it where it is needed.
/// Blocks that apply to every kind (a local proxy, files rewritten on rotation) belong here next
/// to ``target``, with kind-specific settings in an enum shaped like ``CredentialTarget``.
public struct CredentialConfig: Sendable, Equatable {
    public var name: CredentialName
    /// What the credential is for and whose identity obtains it.
    public var target: CredentialTarget
    /// A local listener whose clients connect without a password.
    public var proxy: ProxyConfig?
    /// Files rewritten with every new secret, and the hook run after (`sinks:`, `on_rotate:`).
    public var sinks: CredentialSinks

    public init(name: CredentialName, target: CredentialTarget, proxy: ProxyConfig? = nil, sinks: CredentialSinks = CredentialSinks()) {
        self.name = name
        self.target = target
        self.proxy = proxy
        self.sinks = sinks
    }

    public var kind: CredentialKind { target.kind }
    public var provider: CredentialProvider { target.provider }
    /// Where clients use the credential: the `connection` object of its JSON.
    public var connection: CredentialConnection { target.connection }
}

/// What a credential is for.
public enum CredentialKind: String, Sendable, CaseIterable, Codable {
    case postgres, redis, vault
}

/// Whose identity obtains a credential.
public enum CredentialProvider: String, Sendable, CaseIterable, Codable {
    case aws, azure, gcp
}

/// The server a credential opens, with how the agent obtains it there. Each case holds exactly
/// the fields its kind has.
public enum CredentialTarget: Sendable, Equatable {
    case postgres(Postgres)
    case redis(Redis)
    case vault(Vault)

    public var kind: CredentialKind { connection.kind }

    public var provider: CredentialProvider {
        switch self {
        case let .postgres(target): target.login.provider
        case let .redis(target): target.login.provider
        case let .vault(target): target.provider
        }
    }

    /// The configured database or cache user; nil for Vault and where the provider derives it.
    public var user: String? {
        switch self {
        case let .postgres(target): target.login.user
        case let .redis(target): target.login.user
        case .vault: nil
        }
    }

    public var connection: CredentialConnection {
        switch self {
        case let .postgres(target): .postgres(target.connection)
        case let .redis(target): .redis(target.connection)
        case let .vault(target): .vault(target.connection)
        }
    }

    /// A PostgreSQL database: RDS/Aurora, Azure Database for PostgreSQL or Cloud SQL.
    public typealias Postgres = TokenTarget<CredentialConnection.Postgres, RDSLogin>

    /// A Redis cache: ElastiCache/MemoryDB, Azure Cache for Redis or Memorystore.
    public typealias Redis = TokenTarget<CredentialConnection.Redis, ElastiCacheLogin>

    /// A Vault (or OpenBao) token obtained by logging in with the provider's identity.
    public struct Vault: Sendable, Equatable {
        public var connection: CredentialConnection.Vault
        /// The identity the login presents; `method` must accept it.
        public var provider: CredentialProvider
        public var method: VaultAuthMethod
        public var role: String
        /// The auth mount path, e.g. `aws` or `auth-team/aws`, without leading or trailing `/`.
        public var mount: String
        /// aws_iam: the `X-Vault-AWS-IAM-Server-ID` header value.
        public var serverID: String?
        /// jwt (and gcp/azure): the audience or resource the role expects.
        public var audience: String?
        /// Revoke the token when the credential is removed or the agent stops.
        public var revokeOnShutdown: Bool

        public init(connection: CredentialConnection.Vault, provider: CredentialProvider, method: VaultAuthMethod,
                    role: String, mount: String, serverID: String? = nil, audience: String? = nil,
                    revokeOnShutdown: Bool = false) {
            self.connection = connection
            self.provider = provider
            self.method = method
            self.role = role
            self.mount = mount
            self.serverID = serverID
            self.audience = audience
            self.revokeOnShutdown = revokeOnShutdown
        }
    }
}

/// A database or cache whose password is an IAM token: where it is (the `connection` clients
/// see) and the user the token is obtained for.
public struct TokenTarget<Connection: Sendable & Equatable, AWS: AWSTokenLogin>: Sendable, Equatable {
    public var connection: Connection
    public var login: TokenLogin<AWS>

    public init(connection: Connection, login: TokenLogin<AWS>) {
        self.connection = connection
        self.login = login
    }
}

/// How a database or cache password (an IAM token) is obtained with each provider's identity;
/// `AWS` is what the AWS token is signed for.
public enum TokenLogin<AWS: AWSTokenLogin>: Sendable, Equatable {
    /// An AWS IAM auth token, signed locally with the agent's keys.
    case aws(AWS)
    /// An Entra token for the Entra principal `user`.
    case azure(AzureLogin)
    /// A Google access token; `user` when the server needs a name (Cloud SQL derives it from the
    /// service account when nil).
    case gcp(user: String?)

    public var provider: CredentialProvider {
        switch self {
        case .aws: .aws
        case .azure: .azure
        case .gcp: .gcp
        }
    }

    /// The configured user, when there is one.
    public var user: String? {
        switch self {
        case let .aws(login): login.user
        case let .azure(login): login.user
        case let .gcp(user): user
        }
    }
}

/// What an AWS IAM auth token is signed for; it always names a user.
public protocol AWSTokenLogin: Sendable, Equatable {
    var user: String { get }
}

/// An RDS/Aurora database user whose IAM token is signed for the connection's host and port.
public struct RDSLogin: AWSTokenLogin {
    public var user: String

    public init(user: String) {
        self.user = user
    }
}

/// An Entra principal and the token audience it logs in with.
public struct AzureLogin: Sendable, Equatable {
    public var user: String
    /// The token audience; nil is the service's standard resource.
    public var resource: String?

    public init(user: String, resource: String? = nil) {
        self.user = user
        self.resource = resource
    }
}

/// An ElastiCache or MemoryDB user whose IAM token is signed for the cache.
public struct ElastiCacheLogin: AWSTokenLogin {
    public var cacheName: String
    public var user: String
    public var serverless: Bool
    public var engine: RedisEngine

    public init(cacheName: String, user: String, serverless: Bool = false, engine: RedisEngine = .elasticache) {
        self.cacheName = cacheName
        self.user = user
        self.serverless = serverless
        self.engine = engine
    }
}

/// AWS Redis-compatible engines whose IAM tokens differ only in the signed service name.
public enum RedisEngine: String, Sendable, CaseIterable {
    case elasticache, memorydb
}
