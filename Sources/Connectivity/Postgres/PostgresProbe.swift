import CloudAuth
import Foundation

/// Where and as whom to connect to PostgreSQL.
public struct PostgresTarget: Sendable {
    public var host: String
    public var port: Int
    public var database: String
    public var user: String
    /// The password: for RDS, Cloud SQL and Azure, the IAM token.
    public var password: Secret
    /// libpq's sslmode: disable, allow, prefer, require, verify-ca, verify-full.
    public var sslmode: String
    /// CA bundle to verify the server certificate with (libpq `sslrootcert`).
    public var caFile: String?
    /// Connect to this IP address while verifying the certificate for `host` (libpq `hostaddr`).
    public var hostAddress: String?
    /// Seconds for the whole connection set-up, TLS and authentication included (libpq counts
    /// whole seconds and treats less than 2 as 2).
    public var connectTimeout: Int
    /// When set, the server (a local proxy) must run as one of these uids, or its answer is not
    /// believed.
    public var trustedServer: TrustedServerUIDs?

    public init(host: String, port: Int = 5432, database: String, user: String, password: Secret,
                sslmode: String = "verify-full", caFile: String? = nil, hostAddress: String? = nil,
                connectTimeout: Int = 10) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
        self.sslmode = sslmode
        self.caFile = caFile
        self.hostAddress = hostAddress
        self.connectTimeout = connectTimeout
    }

    /// The libpq connection parameters, as keyword/value pairs.
    var libpqParameters: [(keyword: String, value: String)] {
        var parameters: [(keyword: String, value: String)] = [
            ("host", host), ("port", String(port)), ("dbname", database), ("user", user),
            ("password", password.reveal()), ("sslmode", sslmode),
            ("connect_timeout", String(max(connectTimeout, 1))), ("application_name", "credagent"),
        ]
        if let hostAddress { parameters.append(("hostaddr", hostAddress)) }
        if let caFile { parameters.append(("sslrootcert", caFile)) }
        return parameters
    }
}

/// Checks a PostgreSQL credential: connects with libpq, runs `SELECT current_user`, and reports
/// the server version, whether TLS is in use (version and cipher), and how long connecting and
/// querying took. Failures carry a cause and a remedy; messages never hold the password.
public typealias PostgresProbe = BlockingProbe<PostgresTarget>

extension PostgresTarget: BlockingProbeTarget {
    public static let kind = "postgres"

    /// `host:port` (a directory and port for a Unix socket).
    public var endpoint: String { "\(host):\(port)" }

    /// Connects with libpq and runs the query, timed.
    public func check() -> ProbeOutcome {
        var timer = StepTimer()
        var outcome = ProbeOutcome()
        outcome.failure = PostgresProbe.connectAndQuery(self, timer: &timer, details: &outcome.details)
        outcome.steps = timer.steps
        return outcome
    }
}

extension PostgresProbe {
    /// Connects, records what the server revealed, runs the query; returns why it failed, if it did.
    fileprivate static func connectAndQuery(_ target: PostgresTarget, timer: inout StepTimer,
                                            details: inout [ProbeDetail]) -> ProbeFailure? {
        let connection = timer.time("connect") { PostgresConnection(parameters: target.libpqParameters) }
        guard let connection else { return ProbeFailure(.failed, "libpq could not allocate a connection") }
        guard connection.isConnected else {
            return PostgresFailure.classify(connection.errorMessage.redacting(target.password), sslmode: target.sslmode)
        }
        if let trusted = target.trustedServer, let untrusted = trusted.failure(connected: connection.socket, address: target.endpoint) {
            return untrusted
        }
        if let version = connection.parameterStatus("server_version") {
            details.append(ProbeDetail("server_version", version))
        }
        let tls = [connection.tlsAttribute("protocol"), connection.tlsAttribute("cipher")].compactMap { $0 }
        details.append(ProbeDetail("tls", connection.tlsInUse ? tls.joined(separator: " ") : "off"))
        do {
            let user = try timer.time("query") { () throws(PostgresQueryError) in
                try connection.queryFirstValue("SELECT current_user")
            }
            details.append(ProbeDetail("user", user ?? ""))
            return nil
        } catch {
            return ProbeFailure(.failed, "SELECT current_user failed: \(error.message.redacting(target.password))")
        }
    }
}

/// Turns libpq's connection failure text into a cause and a remedy. libpq reports connection
/// failures only as text (no SQLSTATE before a session exists), so this matches the messages of
/// libpq and of the server in English (`lc_messages = 'C'`, the default).
enum PostgresFailure {
    static func classify(_ message: String, sslmode: String) -> ProbeFailure {
        func has(_ fragment: String) -> Bool { message.localizedCaseInsensitiveContains(fragment) }
        let tlsOff = ["disable", "allow"].contains(sslmode)

        if has("password authentication failed") || has("PAM authentication failed")
            || has("SCRAM authentication") || has("authentication failed for user") {
            return ProbeFailure(.rejected, message,
                                remedy: "the password or IAM token was not accepted: check the user name, that the token is current, and that it was issued for this host, port and user")
        }
        if has("no password supplied") {
            return ProbeFailure(.authRequired, message, remedy: "the server requires a password; the credential has none")
        }
        if has("no pg_hba.conf entry"), has("no encryption"), tlsOff {
            return ProbeFailure(.tlsRequired, message, remedy: "the server accepts this user only over TLS: use sslmode verify-full (or require)")
        }
        if has("no pg_hba.conf entry") || has("pg_hba.conf rejects connection") {
            return ProbeFailure(.notPermitted, message, remedy: "the server's pg_hba.conf has no rule letting this user into this database from this host")
        }
        if has("does not support SSL") {
            return ProbeFailure(.tlsUnavailable, message, remedy: "the server does not offer TLS on this port: enable ssl on the server or check the port")
        }
        if has("does not match host name") {
            return ProbeFailure(.hostnameMismatch, message, remedy: "connect with a host name that the server certificate names")
        }
        if has("root certificate file") {
            return ProbeFailure(.untrustedCertificate, message, remedy: "set ca_file to the CA bundle that signed the server certificate")
        }
        if has("certificate verify failed") {
            return ProbeFailure(.untrustedCertificate, message, remedy: "the server certificate is not signed by a CA in ca_file: set ca_file to the right bundle")
        }
        if has("timeout expired") {
            return ProbeFailure(.timeout, message, remedy: "the server did not finish the connection in time: check firewalls and that the port serves PostgreSQL")
        }
        if has("Connection refused") || has("could not translate host name") || has("No route to host")
            || has("Network is unreachable") {
            return ProbeFailure(.unreachable, message, remedy: "check the host and port, and that the server runs and accepts TCP connections")
        }
        if has("database \""), has("does not exist") {
            return ProbeFailure(.databaseMissing, message, remedy: "create the database or fix the database name")
        }
        if has("permission denied for database") || has("CONNECT privilege") {
            return ProbeFailure(.notPermitted, message, remedy: "grant CONNECT on the database to this user")
        }
        if has("starting up") || has("shutting down") || has("too many clients") || has("in recovery mode") {
            return ProbeFailure(.serverError, message)
        }
        if has("invalid response to SSL negotiation") || has("expected authentication request") {
            return ProbeFailure(.protocolError, message, remedy: "the port does not seem to serve PostgreSQL")
        }
        if has("server closed the connection unexpectedly") {
            return ProbeFailure(.closed, message)
        }
        if has("SSL") {
            return ProbeFailure(.tlsFailed, message)
        }
        return ProbeFailure(.failed, message)
    }
}
