import CloudAuth
import Foundation

/// What a sink file holds, rendered from a credential's JSON answer. Pure: the same answer
/// always gives the same bytes.
public enum SinkFormat: Sendable, Equatable {
    /// The JSON answer of `GET /v1/credentials/{name}`, byte for byte.
    case json
    /// `CREDAGENT_USERNAME="..."` lines (see ``environmentVariables``), double-quoted with `"`,
    /// `\`, `` ` `` and `$` escaped by `\`, which a POSIX shell's `.` and systemd's
    /// `EnvironmentFile=` read alike (systemd reads `'\''` otherwise than a shell).
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

    /// The fields of a pgpass line, in order.
    static let pgpassFields = ["host", "port", "database", "username", "password"]

    /// Why this format cannot write `fields`, or nil: `env` and `pgpass` are one value per line
    /// and cannot carry a line break (or a NUL). Names the field, never its value.
    public func problem(with fields: CredentialFields) -> String? {
        let names = switch self {
        case .env: Self.environmentVariables.map(\.field)
        case .pgpass: Self.pgpassFields
        case .json, .password, .template: [String]()
        }
        for name in names {
            guard case let value?? = fields.value(of: name),
                  value.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) else { continue }
            return "the credential's \(name) holds a line break or NUL, which the \(self.name) format cannot carry (one value per line); use the json format or a template for it"
        }
        return nil
    }

    /// The file's content for the credential whose JSON answer is `json` (and whose fields,
    /// decoded from it, are `fields`). ``problem(with:)`` says first whether it can.
    public func render(json: [UInt8], fields: CredentialFields) -> Secret {
        switch self {
        case .json:
            return Secret(String(decoding: json, as: UTF8.self))
        case .env:
            let lines = Self.environmentVariables.compactMap { variable, field -> String? in
                guard case let value?? = fields.value(of: field) else { return nil }
                return "\(variable)=\(SinkText.environmentQuoted(value))\n"
            }
            return Secret(lines.joined())
        case .pgpass:
            let parts = Self.pgpassFields.map { field -> String in
                guard case let value?? = fields.value(of: field) else { return field == "password" ? "" : "*" }
                return SinkText.pgpassEscaped(value)
            }
            return Secret(parts.joined(separator: ":") + "\n")
        case .password:
            return Secret(fields.value(of: "password").flatMap { $0 } ?? fields.text(of: "token"))
        case let .template(template):
            return template.render(fields)
        }
    }
}
