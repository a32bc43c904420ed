import CloudAuth
import Foundation

/// The non-secret facts about a configured credential that its JSON carries: what it is and
/// where it connects to.
public struct CredentialDescriptor: Sendable, Equatable {
    public var name: String
    public var kind: CredentialKind
    public var provider: CredentialProvider
    /// The `connection` object of the credential's JSON, in field order.
    public var connection: [(String, JSONValue)]

    public init(name: String, kind: CredentialKind, provider: CredentialProvider, connection: [(String, JSONValue)]) {
        self.name = name
        self.kind = kind
        self.provider = provider
        self.connection = connection
    }

    public init(_ config: CredentialConfig) {
        var connection: [(String, JSONValue)]
        switch config.kind {
        case .postgres:
            connection = [("host", .optional(config.host)), ("port", config.port.map(JSONValue.int) ?? .null),
                          ("database", .optional(config.database)), ("sslmode", .optional(config.sslmode))]
        case .redis:
            connection = [("host", .optional(config.host)), ("port", config.port.map(JSONValue.int) ?? .null),
                          ("tls", .bool(config.tls ?? true))]
        case .vault:
            connection = [("address", .optional(config.address)), ("namespace", .optional(config.namespace))]
        }
        // Lets clients (`credagent test` over the socket) verify the server as the agent is told to.
        if let caFile = config.caFile { connection.append(("ca_file", .string(caFile))) }
        if let serverName = config.tlsServerName { connection.append(("tls_server_name", .string(serverName))) }
        self.init(name: config.name, kind: config.kind, provider: config.provider, connection: connection)
    }

    public static func == (lhs: CredentialDescriptor, rhs: CredentialDescriptor) -> Bool {
        lhs.name == rhs.name && lhs.kind == rhs.kind && lhs.provider == rhs.provider
            && JSONValue.object(lhs.connection) == JSONValue.object(rhs.connection)
    }

    /// The credential's JSON answer (DESIGN section 4): Vault credentials carry `token`, the
    /// others `username` and `password`; the source's attributes follow, then `connection`.
    public func json(version: Int, held: RefreshStateMachine.Held) -> JSONValue {
        let credential = held.credential
        var fields: [(String, JSONValue)] = [
            ("name", .string(name)), ("kind", .string(kind.rawValue)), ("provider", .string(provider.rawValue)),
            ("version", .int(version)),
        ]
        if kind == .vault {
            fields.append(("token", .string(credential.secret.reveal())))
        } else {
            fields.append(("username", .optional(credential.username)))
            fields.append(("password", .string(credential.secret.reveal())))
        }
        for key in credential.attributes.keys.sorted() {
            switch credential.attributes[key] {
            case let .string(value)?: fields.append((key, .string(value)))
            case let .int(value)?: fields.append((key, .int(value)))
            case let .bool(value)?: fields.append((key, .bool(value)))
            case nil: break
            }
        }
        fields.append(("issued_at", .timestamp(credential.issuedAt)))
        fields.append(("expires_at", .timestamp(credential.expiresAt)))
        fields.append(("refresh_at", .timestamp(held.refreshAt)))
        fields.append(("connection", .object(connection)))
        return .object(fields)
    }
}
