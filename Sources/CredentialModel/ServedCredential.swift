import CloudAuth
import Foundation

/// A credential as the agent serves it (`GET /v1/credentials/{name}`, docs/API.md): the agent
/// encodes one per version, clients decode it.
///
/// Postgres and Redis credentials carry `username` and `password`; Vault credentials `token`
/// (``secret`` either way) and Vault's `accessor`, `renewable` and `lease_duration` as
/// ``attributes``. The secret stays wrapped in ``Secret``.
public struct ServedCredential: Sendable {
    public var name: CredentialName
    public var provider: CredentialProvider
    /// Starts at 1 with the first secret and grows by one with every new secret.
    public var version: Int
    /// The user to present with the secret (postgres and redis; nil when the protocol needs none).
    public var username: String?
    /// The password, or Vault's token.
    public var secret: Secret
    /// Non-secret extras of the issuer, keyed by JSON field name (Vault's lease).
    public var attributes: [String: CredentialAttribute]
    public var issuedAt: Date
    public var expiresAt: Date
    /// When the agent plans to replace it.
    public var refreshAt: Date
    public var connection: CredentialConnection
    /// Where the credential's local proxy listens, when it has one (`proxy.listen` in the JSON).
    public var proxy: ProxyListenAddress?

    public var kind: CredentialKind { connection.kind }

    public init(name: CredentialName, provider: CredentialProvider, version: Int, username: String?, secret: Secret,
                attributes: [String: CredentialAttribute] = [:], issuedAt: Date, expiresAt: Date, refreshAt: Date,
                connection: CredentialConnection, proxy: ProxyListenAddress? = nil) {
        self.name = name
        self.provider = provider
        self.version = version
        self.username = username
        self.secret = secret
        self.attributes = attributes
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.refreshAt = refreshAt
        self.connection = connection
        self.proxy = proxy
    }

    /// The answer's JSON, fields in the documented order: Vault credentials carry `token`, the
    /// others `username` and `password`; the attributes follow by name, then the times and
    /// `connection`. The secret is revealed here, into the answer, and nowhere else.
    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [
            ("name", .string(name.rawValue)), ("kind", .string(kind.rawValue)), ("provider", .string(provider.rawValue)),
            ("version", .int(version)),
        ]
        if kind == .vault {
            fields.append(("token", .string(secret.reveal())))
        } else {
            fields.append(("username", .optional(username)))
            fields.append(("password", .string(secret.reveal())))
        }
        for key in attributes.keys.sorted() {
            switch attributes[key] {
            case let .string(value)?: fields.append((key, .string(value)))
            case let .int(value)?: fields.append((key, .int(value)))
            case let .bool(value)?: fields.append((key, .bool(value)))
            case nil: break
            }
        }
        fields.append(("issued_at", .timestamp(issuedAt)))
        fields.append(("expires_at", .timestamp(expiresAt)))
        fields.append(("refresh_at", .timestamp(refreshAt)))
        fields.append(("connection", connection.json))
        if let proxy { fields.append(("proxy", .object([("listen", .string(proxy.description))]))) }
        return .object(fields)
    }
}

/// A value that a credential's issuer attaches to it, written into the credential's JSON (for
/// example Vault's `accessor`, `renewable` and `lease_duration`).
public enum CredentialAttribute: Sendable, Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
}

extension ServedCredential: Codable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }

        static let name = Key("name"), kind = Key("kind"), provider = Key("provider"), version = Key("version")
        static let username = Key("username"), password = Key("password"), token = Key("token")
        static let issuedAt = Key("issued_at"), expiresAt = Key("expires_at"), refreshAt = Key("refresh_at")
        static let connection = Key("connection"), proxy = Key("proxy")
        /// Keys that are not attributes.
        static let fixed: Set<String> = [name, kind, provider, version, username, password, token, issuedAt, expiresAt,
                                         refreshAt, connection, proxy].reduce(into: []) { $0.insert($1.stringValue) }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let kind = try container.decode(CredentialKind.self, forKey: .kind)
        func date(_ key: Key) throws -> Date {
            let text = try container.decode(String.self, forKey: key)
            guard let date = Timestamp.parse(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "'\(text)' is not an RFC 3339 time")
            }
            return date
        }
        var attributes: [String: CredentialAttribute] = [:]
        for key in container.allKeys where !Key.fixed.contains(key.stringValue) {
            if let flag = try? container.decode(Bool.self, forKey: key) { attributes[key.stringValue] = .bool(flag) }
            else if let number = try? container.decode(Int.self, forKey: key) { attributes[key.stringValue] = .int(number) }
            else if let text = try? container.decode(String.self, forKey: key) { attributes[key.stringValue] = .string(text) }
        }
        self.init(
            name: try container.decode(CredentialName.self, forKey: .name),
            provider: try container.decode(CredentialProvider.self, forKey: .provider),
            version: try container.decode(Int.self, forKey: .version),
            username: kind == .vault ? nil : try container.decodeIfPresent(String.self, forKey: .username),
            secret: Secret(try container.decode(String.self, forKey: kind == .vault ? .token : .password)),
            attributes: attributes, issuedAt: try date(.issuedAt), expiresAt: try date(.expiresAt),
            refreshAt: try date(.refreshAt),
            connection: try CredentialConnection(kind: kind, from: try container.superDecoder(forKey: .connection)),
            proxy: try container.decodeIfPresent(ServedProxy.self, forKey: .proxy).map { proxy in
                guard let address = ProxyListenAddress(listen: proxy.listen, socketIsDirectory: kind == .postgres) else {
                    throw DecodingError.dataCorruptedError(forKey: .proxy, in: container,
                                                           debugDescription: "'\(proxy.listen)' is not a proxy's listen address")
                }
                return address
            })
    }

    /// The `proxy` object of the JSON.
    private struct ServedProxy: Decodable {
        var listen: String
    }

    /// Encodes ``json``; an encoder that keeps key order writes the agent's exact answer.
    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }
}
