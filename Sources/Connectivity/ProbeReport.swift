import Foundation

/// Why a connectivity check failed, as a short stable token (`rejected`, `timeout`, ...) fit for a
/// JSON field or a metric label.
public struct ProbeCause: Hashable, Sendable, CustomStringConvertible {
    private enum Kind: String, Sendable {
        case rejected
        case authRequired = "auth_required"
        case notPermitted = "not_permitted"
        case tlsRequired = "tls_required"
        case tlsUnavailable = "tls_unavailable"
        case tlsFailed = "tls_failed"
        case untrustedCertificate = "untrusted_certificate"
        case hostnameMismatch = "hostname_mismatch"
        case untrustedServer = "untrusted_server"
        case unreachable
        case timeout
        case databaseMissing = "database_missing"
        case closed
        case protocolError = "protocol_error"
        case serverError = "server_error"
        case invalidInput = "invalid_input"
        case credentialUnavailable = "credential_unavailable"
        case failed
    }
    private let kind: Kind
    private init(_ kind: Kind) { self.kind = kind }

    /// The server refused the password or token (wrong, expired, or not an accepted IAM token).
    public static let rejected = ProbeCause(.rejected)
    /// The server wants credentials and none were sent.
    public static let authRequired = ProbeCause(.authRequired)
    /// Authenticated, but the user may not use this database or command.
    public static let notPermitted = ProbeCause(.notPermitted)
    /// The server accepts this client only over TLS and the client did not use it.
    public static let tlsRequired = ProbeCause(.tlsRequired)
    /// The client asked for TLS and the server does not offer it on this port.
    public static let tlsUnavailable = ProbeCause(.tlsUnavailable)
    /// The TLS handshake failed for another reason (versions, ciphers, broken connection).
    public static let tlsFailed = ProbeCause(.tlsFailed)
    /// The server's certificate does not chain to a trusted CA.
    public static let untrustedCertificate = ProbeCause(.untrustedCertificate)
    /// The certificate is trusted but names another host.
    public static let hostnameMismatch = ProbeCause(.hostnameMismatch)
    /// A local server (a credential's proxy) runs as a uid this client does not trust: an
    /// impostor in the proxy's place. Its answer is not believed.
    public static let untrustedServer = ProbeCause(.untrustedServer)
    /// Nothing answered: refused, no route, or the name does not resolve.
    public static let unreachable = ProbeCause(.unreachable)
    /// The server did not answer within the time limit.
    public static let timeout = ProbeCause(.timeout)
    /// The database named in the target does not exist.
    public static let databaseMissing = ProbeCause(.databaseMissing)
    /// The server closed the connection without an answer.
    public static let closed = ProbeCause(.closed)
    /// The server answered something its protocol does not allow.
    public static let protocolError = ProbeCause(.protocolError)
    /// The server reported an error of its own (sealed, starting up, overloaded).
    public static let serverError = ProbeCause(.serverError)
    /// The target's settings are not usable (missing file, bad value).
    public static let invalidInput = ProbeCause(.invalidInput)
    /// No credential could be obtained to test with.
    public static let credentialUnavailable = ProbeCause(.credentialUnavailable)
    /// Anything else; the message says what.
    public static let failed = ProbeCause(.failed)

    public var description: String { kind.rawValue }
}

/// A failed check: the cause, what happened (naming the endpoint, never a secret) and what to do.
public struct ProbeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var cause: ProbeCause
    public var message: String
    public var remedy: String?

    public init(_ cause: ProbeCause, _ message: String, remedy: String? = nil) {
        self.cause = cause
        self.message = message
        self.remedy = remedy
    }

    public var description: String {
        "\(cause): \(message)" + (remedy.map { " (\($0))" } ?? "")
    }
}

/// One timed step of a check (`connect`, `auth`, `query`, ...).
public struct ProbeStep: Sendable, Equatable {
    public var name: String
    public var seconds: Double
    public init(_ name: String, seconds: Double) {
        self.name = name
        self.seconds = seconds
    }
}

/// One fact a server revealed during a check (`server_version`, `tls`, `user`, ...).
public struct ProbeDetail: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// The outcome of one connectivity check: where it went, how long each step took, what the
/// server said about itself, and the failure's cause and remedy when it failed.
public struct ProbeReport: Sendable, Equatable {
    /// The credential or target name.
    public var name: String
    /// `postgres`, `redis` or `vault`.
    public var kind: String
    /// The cloud whose credential was used (`aws`, `azure`, `gcp`), when known.
    public var provider: String?
    /// `host:port` or the Vault address: never a secret.
    public var endpoint: String
    /// The steps that ran, in order, with their durations.
    public var steps: [ProbeStep]
    /// Facts the server revealed, in the order the probe found them.
    public var details: [ProbeDetail]
    public var failure: ProbeFailure?

    public init(name: String, kind: String, provider: String? = nil, endpoint: String,
                steps: [ProbeStep] = [], details: [ProbeDetail] = [],
                failure: ProbeFailure? = nil) {
        self.name = name
        self.kind = kind
        self.provider = provider
        self.endpoint = endpoint
        self.steps = steps
        self.details = details
        self.failure = failure
    }

    public var ok: Bool { failure == nil }

    /// The time all steps took together.
    public var totalSeconds: Double { steps.reduce(0) { $0 + $1.seconds } }

    /// The value of a detail, if the probe recorded it.
    public func detail(_ key: String) -> String? { details.first { $0.key == key }?.value }
}

// MARK: - Rendering

extension ProbeReport {
    /// The columns of ``table(_:)``.
    public static let tableHeader = ["NAME", "KIND", "PROVIDER", "RESULT", "LATENCY", "DETAIL"]

    /// This report as one row of ``table(_:)``: name, kind, provider, result, latency, detail.
    public var tableRow: [String] {
        let result = failure.map { "FAIL (\($0.cause))" } ?? "ok"
        let detail = failure?.message ?? details.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let latency = steps.isEmpty ? "-" : Self.milliseconds(totalSeconds)
        return [name, kind, provider ?? "-", result, latency, detail.singleLine]
    }

    /// Reports as an aligned text table, then one `remedy:` line per failure that has a remedy.
    public static func table(_ reports: [ProbeReport]) -> String {
        let rows = [tableHeader] + reports.map(\.tableRow)
        let widths = (0..<tableHeader.count - 1).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var lines = rows.map { row in
            zip(row.dropLast(), widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "  " + row.last!
        }
        for report in reports {
            if let remedy = report.failure?.remedy { lines.append("remedy: \(report.name): \(remedy)") }
        }
        return lines.map { $0.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) }
            .joined(separator: "\n") + "\n"
    }

    /// This report as a JSON object:
    /// `{name, kind, provider, endpoint, ok, latency_ms: {step: ms, total}, details: {...}, failure: {cause, message, remedy}}`.
    public var jsonObject: [String: Any] {
        var latency: [String: Any] = ["total": Self.roundedMilliseconds(totalSeconds)]
        for step in steps { latency[step.name] = Self.roundedMilliseconds(step.seconds) }
        var object: [String: Any] = [
            "name": name, "kind": kind, "endpoint": endpoint, "ok": ok, "latency_ms": latency,
            "details": Dictionary(details.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first }),
        ]
        object["provider"] = provider ?? NSNull()
        if let failure {
            object["failure"] = ["cause": failure.cause.description, "message": failure.message,
                                 "remedy": failure.remedy ?? NSNull()] as [String: Any]
        } else {
            object["failure"] = NSNull()
        }
        return object
    }

    /// Reports as a JSON document `{"ok": all passed, "checks": [...]}`, keys sorted.
    public static func json(_ reports: [ProbeReport]) -> String {
        let document: [String: Any] = ["ok": reports.allSatisfy(\.ok), "checks": reports.map(\.jsonObject)]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static func roundedMilliseconds(_ seconds: Double) -> Double {
        (seconds * 10_000).rounded() / 10
    }

    private static func milliseconds(_ seconds: Double) -> String {
        String(format: "%.1f ms", seconds * 1000)
    }
}
