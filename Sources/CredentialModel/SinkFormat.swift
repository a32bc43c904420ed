import CloudAuth
import Foundation

/// What a sink file holds, rendered from a credential's JSON answer. Pure: the same answer
/// always gives the same bytes.
public enum SinkFormat: Sendable, Equatable {
    /// The JSON answer of `GET /v1/credentials/{name}`, byte for byte.
    case json
    /// `CREDAGENT_USERNAME='...'` lines (see ``environmentVariables``), single-quoted for a POSIX
    /// shell's `.` and systemd's `EnvironmentFile=`.
    case env
    /// One `.pgpass` line, `host:port:database:username:password`, `:` and `\` escaped and a
    /// missing value as `*` (postgres credentials only).
    case pgpass
    /// The secret alone (the password, or Vault's token), without a newline.
    case password
    /// The credential's fields through a ``SinkTemplate``.
    case template(SinkTemplate)

    /// The names of the formats as the config writes them.
    public static let names = ["json", "env", "pgpass", "password", "template"]

    public var name: String {
        switch self {
        case .json: "json"
        case .env: "env"
        case .pgpass: "pgpass"
        case .password: "password"
        case .template: "template"
        }
    }

    /// The variables of the env format and the fields they hold, in order; those whose field is
    /// null or absent are left out.
    public static let environmentVariables: [(variable: String, field: String)] = [
        ("CREDAGENT_USERNAME", "username"), ("CREDAGENT_PASSWORD", "password"), ("CREDAGENT_TOKEN", "token"),
        ("CREDAGENT_HOST", "host"), ("CREDAGENT_PORT", "port"), ("CREDAGENT_DATABASE", "database"),
        ("CREDAGENT_SSLMODE", "sslmode"), ("CREDAGENT_TLS", "tls"), ("CREDAGENT_ADDRESS", "address"),
        ("CREDAGENT_NAMESPACE", "namespace"), ("CREDAGENT_EXPIRES_AT", "expires_at"),
    ]

    /// The file's content for the credential whose JSON answer is `json` (and whose fields,
    /// decoded from it, are `fields`).
    public func render(json: [UInt8], fields: CredentialFields) -> Secret {
        switch self {
        case .json:
            return Secret(String(decoding: json, as: UTF8.self))
        case .env:
            let lines = Self.environmentVariables.compactMap { variable, field -> String? in
                guard case let value?? = fields.value(of: field) else { return nil }
                return "\(variable)=\(SinkText.shellQuoted(value))\n"
            }
            return Secret(lines.joined())
        case .pgpass:
            let parts = ["host", "port", "database", "username"].map { field -> String in
                guard case let value?? = fields.value(of: field) else { return "*" }
                return SinkText.pgpassEscaped(value)
            }
            return Secret((parts + [SinkText.pgpassEscaped(fields.text(of: "password"))]).joined(separator: ":") + "\n")
        case .password:
            return Secret(fields.value(of: "password").flatMap { $0 } ?? fields.text(of: "token"))
        case let .template(template):
            return template.render(fields)
        }
    }
}
