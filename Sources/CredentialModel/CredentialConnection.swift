/// Where a credential is used: the `connection` object of its JSON (docs/API.md). The agent
/// writes it from the config; clients (`credagent get`, `credagent test`) read it back.
public enum CredentialConnection: Sendable, Equatable {
    case postgres(Postgres)
    case redis(Redis)
    case vault(Vault)

    public var kind: CredentialKind {
        switch self {
        case .postgres: .postgres
        case .redis: .redis
        case .vault: .vault
        }
    }

    /// The CA bundle the agent's config names for verifying the server, when it names one.
    public var caFile: String? {
        get {
            switch self {
            case let .postgres(connection): connection.caFile
            case let .redis(connection): connection.caFile
            case let .vault(connection): connection.caFile
            }
        }
        set {
            switch self {
            case var .postgres(connection):
                connection.caFile = newValue
                self = .postgres(connection)
            case var .redis(connection):
                connection.caFile = newValue
                self = .redis(connection)
            case var .vault(connection):
                connection.caFile = newValue
                self = .vault(connection)
            }
        }
    }

    /// `host:port` or the Vault address, for reports; `-` for a Redis cache without a host.
    public var endpoint: String {
        switch self {
        case let .postgres(connection): "\(connection.host):\(connection.port)"
        case let .redis(connection): connection.host.map { "\($0):\(connection.port)" } ?? "-"
        case let .vault(connection): connection.address
        }
    }

    /// A PostgreSQL server: `host`, `port`, `database`, `sslmode`.
    public struct Postgres: Sendable, Equatable {
        public var host: String
        public var port: Int
        /// The database to connect to; nil when the config leaves it to the client.
        public var database: String?
        public var sslmode: PostgresSSLMode
        public var caFile: String?

        public static let defaultPort = 5432

        public init(host: String, port: Int = Self.defaultPort, database: String? = nil,
                    sslmode: PostgresSSLMode = .verifyFull, caFile: String? = nil) {
            self.host = host
            self.port = port
            self.database = database
            self.sslmode = sslmode
            self.caFile = caFile
        }
    }

    /// A Redis server: `host`, `port`, `tls`.
    public struct Redis: Sendable, Equatable {
        /// Nil for an AWS cache configured by name only.
        public var host: String?
        public var port: Int
        public var tls: Bool
        public var caFile: String?

        public static let defaultPort = 6379

        public init(host: String?, port: Int = Self.defaultPort, tls: Bool = true, caFile: String? = nil) {
            self.host = host
            self.port = port
            self.tls = tls
            self.caFile = caFile
        }
    }

    /// A Vault server: `address`, `namespace`, `tls_server_name`.
    public struct Vault: Sendable, Equatable {
        /// `http(s)://host[:port]`.
        public var address: String
        public var namespace: String?
        public var caFile: String?
        /// The name the server's certificate must carry (and the SNI), when it is not the address's host.
        public var tlsServerName: String?

        public init(address: String, namespace: String? = nil, caFile: String? = nil, tlsServerName: String? = nil) {
            self.address = address
            self.namespace = namespace
            self.caFile = caFile
            self.tlsServerName = tlsServerName
        }
    }
}

/// libpq's `sslmode`.
public enum PostgresSSLMode: String, Sendable, CaseIterable, Codable {
    case disable, allow, prefer, require
    case verifyCA = "verify-ca"
    case verifyFull = "verify-full"

    /// Whether a password may go to the server without TLS in this mode.
    public var allowsPlaintext: Bool { self == .disable || self == .allow || self == .prefer }
}

// MARK: - JSON

extension CredentialConnection {
    /// The wire fields in their order. `ca_file` and `tls_server_name` appear only when
    /// configured; the other fields are always present (null when unset).
    public var json: JSONValue {
        var fields: [(String, JSONValue)]
        switch self {
        case let .postgres(connection):
            fields = [("host", .string(connection.host)), ("port", .int(connection.port)),
                      ("database", .optional(connection.database)), ("sslmode", .string(connection.sslmode.rawValue))]
        case let .redis(connection):
            fields = [("host", .optional(connection.host)), ("port", .int(connection.port)), ("tls", .bool(connection.tls))]
        case let .vault(connection):
            fields = [("address", .string(connection.address)), ("namespace", .optional(connection.namespace))]
        }
        if let caFile { fields.append(("ca_file", .string(caFile))) }
        if case let .vault(connection) = self, let serverName = connection.tlsServerName {
            fields.append(("tls_server_name", .string(serverName)))
        }
        return .object(fields)
    }

    private enum Keys: String, CodingKey {
        case host, port, database, sslmode, tls, address, namespace
        case caFile = "ca_file", tlsServerName = "tls_server_name"
    }

    /// Reads the `connection` object of a credential of `kind`.
    init(kind: CredentialKind, from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        let caFile = try container.decodeIfPresent(String.self, forKey: .caFile)
        switch kind {
        case .postgres:
            self = .postgres(Postgres(
                host: try container.decode(String.self, forKey: .host), port: try container.decode(Int.self, forKey: .port),
                database: try container.decodeIfPresent(String.self, forKey: .database),
                sslmode: try container.decode(PostgresSSLMode.self, forKey: .sslmode), caFile: caFile))
        case .redis:
            self = .redis(Redis(
                host: try container.decodeIfPresent(String.self, forKey: .host), port: try container.decode(Int.self, forKey: .port),
                tls: try container.decode(Bool.self, forKey: .tls), caFile: caFile))
        case .vault:
            self = .vault(Vault(
                address: try container.decode(String.self, forKey: .address),
                namespace: try container.decodeIfPresent(String.self, forKey: .namespace), caFile: caFile,
                tlsServerName: try container.decodeIfPresent(String.self, forKey: .tlsServerName)))
        }
    }
}
