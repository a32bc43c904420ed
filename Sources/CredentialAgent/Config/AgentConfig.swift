import CloudAuth
import CredentialModel
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
    /// How long a connection may sit without a request before it is closed.
    public var idleTimeout: Duration
    /// How long from a request's first byte to its end before it is answered 408.
    public var requestTimeout: Duration

    public static let defaultPath = "/run/credagent/agent.sock"

    public init(path: String = SocketConfig.defaultPath, mode: UInt32 = 0o660,
                allowUIDs: [UInt32] = [], allowGIDs: [UInt32] = [],
                maxConnections: Int = 1024, idleTimeout: Duration = .seconds(60), requestTimeout: Duration = .seconds(10)) {
        self.path = path
        self.mode = mode
        self.allowUIDs = allowUIDs
        self.allowGIDs = allowGIDs
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
    }
}

/// The `refresh:` section: when credentials are renewed and how failures are retried.
///
/// Its durations are seconds (`TimeInterval`), unlike the socket's timers: they are offsets from
/// wall-clock times (a credential's issue and expiry), and `Date` arithmetic is in seconds.
public struct RefreshConfig: Sendable, Equatable {
    /// Refresh when less than this many seconds are left.
    public var minRemaining: TimeInterval
    /// ... or when this fraction of the lifetime has passed, whichever comes first.
    public var lifetimeFraction: Double
    /// Up to this fraction of the lifetime is taken off the refresh point at random.
    public var jitter: Double
    public var backoffInitial: TimeInterval
    public var backoffMax: TimeInterval
    /// Seconds after a new secret during which a client's refresh is answered with it.
    public var clientMinInterval: TimeInterval

    public init(minRemaining: TimeInterval = 300, lifetimeFraction: Double = 0.66, jitter: Double = 0.1,
                backoffInitial: TimeInterval = 1, backoffMax: TimeInterval = 60, clientMinInterval: TimeInterval = 5) {
        self.minRemaining = minRemaining
        self.lifetimeFraction = lifetimeFraction
        self.jitter = jitter
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
        self.clientMinInterval = clientMinInterval
    }

    /// The shortest `backoff.initial` accepted: less retries a failing endpoint in a tight loop.
    public static let minimumBackoff: TimeInterval = 0.1
    /// The longest `client_min_interval` accepted.
    public static let maximumClientMinInterval: TimeInterval = 300

    public var policy: RefreshPolicy {
        RefreshPolicy(minRemaining: minRemaining, lifetimeFraction: lifetimeFraction, jitter: jitter,
                      clientMinInterval: clientMinInterval)
    }
    public var backoff: Backoff { Backoff(initial: backoffInitial, max: backoffMax) }
}
