import CloudAuth
import CredentialModel
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// The largest config file accepted: a config is a few KiB; anything near this is a mistake.
    public static let maximumFileSize = 1 << 20

    /// Reads and validates the file at `path`, expanding `${NAME}` references in its values from
    /// `environment`; every problem found is in the thrown ``ConfigError``. The file must be a
    /// regular file of at most ``maximumFileSize`` bytes. With `trusting` (the agent's uid), the
    /// file and every directory above it must also pass ``StrictModes``: a config that another
    /// uid could change would let it grant itself access.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                            trusting trusted: uid_t? = nil) throws -> AgentConfig {
        let text = try readFile(path, trusting: trusted)
        return try ConfigParser.parse(yaml: text, file: path, environment: environment)
    }

    /// The file's text, read through one descriptor: the checks apply to the file that is read.
    /// Opened non-blocking, so that a FIFO in its place is reported instead of waited on.
    private static func readFile(_ path: String, trusting trusted: uid_t?) throws -> String {
        func failure(_ message: String) -> ConfigError {
            ConfigError(file: path, issues: [ConfigIssue(path: "", message: message)])
        }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            let cause = errno == ENOENT ? "no such file" : String(cString: strerror(errno))
            throw failure("cannot be read: \(cause) (check the path given to --config and its permissions)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("cannot be examined: \(String(cString: strerror(errno)))") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw failure("is \(fileType(info.st_mode)), not a regular file (point --config at the YAML file itself)")
        }
        guard Int(info.st_size) <= maximumFileSize else {
            throw failure("is \(info.st_size) bytes; a config file may be at most \(maximumFileSize) bytes (1 MiB): "
                          + "check that --config names the agent's YAML file")
        }
        if let trusted {
            do {
                try StrictModes.check(path, trusting: trusted, info: info)
            } catch {
                throw failure("\(error.path) \(error.problem); \(error.remedy)")
            }
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw failure("cannot be read: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            // The file grew after it was examined: the size limit holds for what is read too.
            guard bytes.count <= maximumFileSize else {
                throw failure("is larger than \(maximumFileSize) bytes (1 MiB); check that --config names the agent's YAML file")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw failure("cannot be read: it is not UTF-8 text") }
        return text
    }

    private static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        default: "of another kind"
        }
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
    /// The socket's directory is writable by other uids on purpose (a Kubernetes `emptyDir`
    /// shared by the pod's containers): the agent starts anyway. Clients still refuse a socket
    /// served by another uid.
    public var sharedDirectory = false
    /// Of those, connections of peers that may not read secrets; always fewer than
    /// ``maxConnections``, so that such peers can never lock allowed ones out.
    public var maxForeignConnections: Int = 64
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
/// Its durations are offsets from wall-clock times (a credential's issue and expiry): its
/// ``policy`` and ``backoff`` reckon with them in seconds, as `Date` arithmetic is.
public struct RefreshConfig: Sendable, Equatable {
    /// Refresh when less than this is left.
    public var minRemaining: Duration
    /// ... or when this fraction of the lifetime has passed, whichever comes first.
    public var lifetimeFraction: Double
    /// Up to this fraction of the lifetime is taken off the refresh point at random.
    public var jitter: Double
    public var backoffInitial: Duration
    public var backoffMax: Duration
    /// How long after a new secret a client's refresh is answered with it.
    public var clientMinInterval: Duration

    public init(minRemaining: Duration = .seconds(300), lifetimeFraction: Double = 0.66, jitter: Double = 0.1,
                backoffInitial: Duration = .seconds(1), backoffMax: Duration = .seconds(60), clientMinInterval: Duration = .seconds(5)) {
        self.minRemaining = minRemaining
        self.lifetimeFraction = lifetimeFraction
        self.jitter = jitter
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
        self.clientMinInterval = clientMinInterval
    }

    /// The shortest `backoff.initial` accepted: less retries a failing endpoint in a tight loop.
    public static let minimumBackoff: Duration = .milliseconds(100)
    /// The longest `client_min_interval` accepted.
    public static let maximumClientMinInterval: Duration = .seconds(300)

    public var policy: RefreshPolicy {
        RefreshPolicy(minRemaining: minRemaining.timeInterval, lifetimeFraction: lifetimeFraction, jitter: jitter,
                      clientMinInterval: clientMinInterval.timeInterval)
    }
    public var backoff: Backoff { Backoff(initial: backoffInitial.timeInterval, max: backoffMax.timeInterval) }
}
