import CloudAuth
import Foundation

/// The agent's whole configuration, as read from the YAML file (see docs/CONFIG.md).
///
/// Built only by ``ConfigParser``, which checks every field, so a value of this type is valid.
public struct AgentConfig: Sendable, Equatable {
    public var socket: SocketConfig
    public var refresh: RefreshConfig
    public var aws: AWSSettings
    public var azure: AzureSettings
    public var gcp: GCPSettings
    public var credentials: [CredentialConfig]

    /// The path used when `--config` is not given.
    public static let defaultPath = "/etc/credagent/agent.yaml"

    /// Reads and validates the file at `path`, expanding `${NAME}` references in its values from
    /// `environment`; every problem found is in the thrown ``ConfigError``.
    public static func load(path: String,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AgentConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, issues: [ConfigIssue(path: "", message: "cannot be read: \(Self.reason(error))")])
        }
        return try ConfigParser.parse(yaml: text, file: path, environment: environment)
    }

    private static func reason(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if nsError.domain == NSCocoaErrorDomain, nsError.code == NSFileReadNoSuchFileError { return "no such file" }
        if nsError.domain == NSCocoaErrorDomain, nsError.code == NSFileReadInapplicableStringEncodingError {
            return "it is not UTF-8 text"
        }
        return nsError.localizedDescription
    }
}

/// The `socket:` section: where the API listens and who may read secrets.
public struct SocketConfig: Sendable, Equatable {
    public var path: String
    /// Permission bits of the socket file.
    public var mode: UInt32
    /// Peers allowed to read secrets; both empty means "the agent's own uid only".
    public var allowUIDs: [UInt32]
    public var allowGIDs: [UInt32]
    /// Connections open at once; more are closed as they arrive.
    public var maxConnections: Int
    /// Of those, connections of peers that may not read secrets; always fewer than
    /// ``maxConnections``, so that such peers can never lock allowed ones out.
    public var maxForeignConnections: Int = 64
    /// Seconds a connection may sit without a request before it is closed.
    public var idleTimeout: TimeInterval
    /// Seconds from a request's first byte to its end before it is answered 408.
    public var requestTimeout: TimeInterval

    public static let defaultPath = "/run/credagent/agent.sock"

    public init(path: String = SocketConfig.defaultPath, mode: UInt32 = 0o660,
                allowUIDs: [UInt32] = [], allowGIDs: [UInt32] = [],
                maxConnections: Int = 1024, idleTimeout: TimeInterval = 60, requestTimeout: TimeInterval = 10) {
        self.path = path
        self.mode = mode
        self.allowUIDs = allowUIDs
        self.allowGIDs = allowGIDs
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
    }
}

/// The `refresh:` section: when credentials are renewed and how failures are retried (DESIGN 5).
public struct RefreshConfig: Sendable, Equatable {
    /// Refresh when less than this many seconds are left.
    public var minRemaining: TimeInterval
    /// ... or when this fraction of the lifetime has passed, whichever comes first.
    public var lifetimeFraction: Double
    /// Up to this fraction of the lifetime is taken off the refresh point at random.
    public var jitter: Double
    public var backoffInitial: TimeInterval
    public var backoffMax: TimeInterval

    public init(minRemaining: TimeInterval = 300, lifetimeFraction: Double = 0.66, jitter: Double = 0.1,
                backoffInitial: TimeInterval = 1, backoffMax: TimeInterval = 60) {
        self.minRemaining = minRemaining
        self.lifetimeFraction = lifetimeFraction
        self.jitter = jitter
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
    }

    /// The shortest `backoff.initial` accepted: less retries a failing endpoint in a tight loop.
    public static let minimumBackoff: TimeInterval = 0.1

    public var policy: RefreshPolicy {
        RefreshPolicy(minRemaining: minRemaining, lifetimeFraction: lifetimeFraction, jitter: jitter)
    }
    public var backoff: Backoff { Backoff(initial: backoffInitial, max: backoffMax) }
}

/// What a credential is for.
public enum CredentialKind: String, Sendable, CaseIterable {
    case postgres, redis, vault
}

/// Whose identity obtains a credential.
public enum CredentialProvider: String, Sendable, CaseIterable {
    case aws, azure, gcp
}

/// AWS Redis-compatible engines whose IAM tokens differ only in the signed service name.
public enum RedisEngine: String, Sendable, CaseIterable {
    case elasticache, memorydb
}

/// One entry of `credentials:`. Fields that do not apply to its kind and provider are nil
/// (the parser refuses them).
public struct CredentialConfig: Sendable, Equatable {
    public var name: String
    public var kind: CredentialKind
    public var provider: CredentialProvider

    // postgres and redis
    public var host: String?
    public var port: Int?
    public var user: String?
    /// CA bundle for verifying the server (postgres, redis, vault).
    public var caFile: String?
    /// Azure: the token audience instead of the service's standard resource.
    public var resource: String?

    // postgres
    public var database: String?
    public var sslmode: String?

    // redis
    public var cacheName: String?
    public var serverless: Bool?
    public var tls: Bool?
    public var engine: RedisEngine?

    // vault
    public var method: VaultAuthMethod?
    public var address: String?
    public var mount: String?
    public var role: String?
    public var serverID: String?
    public var audience: String?
    public var namespace: String?
    /// The name to verify Vault's certificate against (and send as SNI) when it differs from
    /// the address's host.
    public var tlsServerName: String?
    /// Revoke the Vault token when the credential is removed or the agent stops.
    public var revokeOnShutdown: Bool?

    public init(name: String, kind: CredentialKind, provider: CredentialProvider) {
        self.name = name
        self.kind = kind
        self.provider = provider
    }
}
