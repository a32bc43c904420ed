import CloudAuth
import Foundation

/// Where and as whom to connect to Redis (or Valkey, ElastiCache, MemoryStore, Azure Cache).
public struct RedisTarget: Sendable {
    public var host: String
    public var port: Int
    /// A Unix socket to connect to instead of `host` and `port` (a local proxy's).
    public var unixPath: String?
    /// ACL user for `AUTH user password`; nil sends `AUTH password` (the default user).
    public var user: String?
    /// The password: for ElastiCache, MemoryDB and Azure, the IAM token. Nil skips AUTH.
    public var password: Secret?
    public var tls: Bool
    /// CA bundle to verify the server certificate with; the system store when nil.
    public var caFile: String?
    /// The name the certificate must carry (and the SNI), when it differs from `host`.
    public var serverName: String?
    /// Seconds to establish TCP.
    public var connectTimeout: Double
    /// Seconds for the TLS handshake and for each command's answer.
    public var ioTimeout: Double
    /// When set, the server (a local proxy) must run as one of these uids, checked before
    /// anything is sent.
    public var trustedServer: TrustedServerUIDs?

    public init(host: String, port: Int = 6379, user: String? = nil, password: Secret? = nil, tls: Bool = true,
                caFile: String? = nil, serverName: String? = nil, connectTimeout: Double = 5, ioTimeout: Double = 5,
                unixPath: String? = nil) {
        self.host = host
        self.unixPath = unixPath
        self.port = port
        self.user = user
        self.password = password
        self.tls = tls
        self.caFile = caFile
        self.serverName = serverName
        self.connectTimeout = connectTimeout
        self.ioTimeout = ioTimeout
    }
}

/// Checks a Redis credential: connects (TLS through OpenSSL with SNI, CA and host name checks,
/// or plain TCP), sends `AUTH`, `PING` and `INFO server`, and reports the server version, the TLS
/// version and cipher, and how long each step took. Failures carry a cause and a remedy; messages
/// never hold the password.
public typealias RedisProbe = BlockingProbe<RedisTarget>

extension RedisTarget: BlockingProbeTarget {
    public static let kind = "redis"

    /// Where the probe connects, for the report and messages.
    public var endpoint: String { unixPath ?? "\(host):\(port)" }

    /// Connects, authenticates, pings and reads the version.
    public func check() -> ProbeOutcome {
        var timer = StepTimer()
        var details: [ProbeDetail] = []
        do {
            let connection = try RedisProbe.open(self, timer: &timer)
            details.append(ProbeDetail("tls", connection.stream.tlsDescription ?? "off"))
            if let password {
                let arguments = [user, password.reveal()].compactMap { $0 }
                let reply = try timer.time("auth") { try connection.send(["AUTH"] + arguments) }
                if case .error(let text) = reply { throw RedisProbe.authFailure(text.redacting(password), target: self) }
            }
            let pong = try timer.time("ping") { try connection.send(["PING"]) }
            switch pong {
            case .status("PONG"): break
            case .error(let text): throw RedisProbe.pingFailure(text.redacting(password))
            default: throw ProbeFailure(.protocolError, "PING was answered with something other than PONG")
            }
            // The version is a detail: a user without INFO rights still passes the check.
            if let info = try connection.send(["INFO", "server"]).text, let version = RedisProbe.serverVersion(info) {
                details.insert(ProbeDetail("server_version", version), at: 0)
            }
            if let user { details.append(ProbeDetail("user", user)) }
            return ProbeOutcome(steps: timer.steps, details: details)
        } catch let failure as ProbeFailure {
            var failure = failure
            failure.message = "\(endpoint): \(failure.message.redacting(password))"
            return ProbeOutcome(steps: timer.steps, details: details, failure: failure)
        } catch {
            return ProbeOutcome(steps: timer.steps, details: details,
                                failure: ProbeFailure(.failed, "\(error)".redacting(password)))
        }
    }
}

extension RedisProbe {
    fileprivate static func open(_ target: RedisTarget, timer: inout StepTimer) throws -> RedisConnection {
        let socket = try timer.time("connect") {
            let deadline = Deadline(seconds: target.connectTimeout)
            if let path = target.unixPath { return try StreamSocket.connect(unixPath: path, deadline: deadline) }
            return try StreamSocket.connect(host: target.host, port: target.port, deadline: deadline)
        }
        if let trusted = target.trustedServer, let untrusted = trusted.failure(connected: socket.descriptor, address: target.endpoint) {
            throw untrusted
        }
        guard target.tls else { return RedisConnection(stream: socket, ioTimeout: target.ioTimeout) }
        let settings = TLSSettings(caFile: target.caFile, serverName: target.serverName ?? target.host)
        let stream = try timer.time("tls") {
            try TLSStream(socket: socket, settings: settings, deadline: Deadline(seconds: target.ioTimeout))
        }
        return RedisConnection(stream: stream, ioTimeout: target.ioTimeout)
    }

    static func authFailure(_ text: String, target: RedisTarget) -> ProbeFailure {
        if text.hasPrefix("WRONGPASS") || text.contains("invalid password") || text.contains("invalid username-password") {
            return ProbeFailure(.rejected, "AUTH was refused: \(text)",
                                remedy: "the password or IAM token was not accepted: check the user, that the token is current, and that it was issued for this cache and user")
        }
        if text.contains("without any password configured") || text.contains("no password is set") {
            return ProbeFailure(.rejected, "AUTH was refused: \(text)",
                                remedy: target.user == nil ? "the server's default user has no password; set a user" : "the server has no password for this user")
        }
        if text.hasPrefix("NOPERM") {
            return ProbeFailure(.notPermitted, "AUTH was refused: \(text)")
        }
        return ProbeFailure(.failed, "AUTH failed: \(text)")
    }

    static func pingFailure(_ text: String) -> ProbeFailure {
        if text.hasPrefix("NOAUTH") {
            return ProbeFailure(.authRequired, "PING was refused: \(text)",
                                remedy: "the server requires AUTH and the credential has no password")
        }
        if text.hasPrefix("NOPERM") {
            return ProbeFailure(.notPermitted, "PING was refused: \(text)", remedy: "grant the user +ping (or +@connection)")
        }
        if text.hasPrefix("LOADING") || text.hasPrefix("BUSY") || text.hasPrefix("MASTERDOWN") {
            return ProbeFailure(.serverError, "PING was refused: \(text)")
        }
        return ProbeFailure(.failed, "PING failed: \(text)")
    }

    /// `redis_version` from an `INFO server` answer.
    static func serverVersion(_ info: String) -> String? {
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("redis_version:") {
            return String(line.dropFirst("redis_version:".count))
        }
        return nil
    }
}
