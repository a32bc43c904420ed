import CloudAuth
import Foundation

/// A credential as the agent serves it (`GET /v1/credentials/{name}`), decoded.
///
/// Postgres and Redis credentials carry `username` and `password`; Vault credentials carry
/// `token`, `accessor`, `renewable` and `leaseDuration`. Secrets stay wrapped in ``Secret``.
public struct AgentCredential: Sendable {
    public var name: String
    public var kind: String
    public var provider: String
    public var version: Int
    public var username: String?
    public var password: Secret?
    public var token: Secret?
    public var accessor: String?
    public var renewable: Bool?
    public var leaseDuration: Int?
    public var issuedAt: String
    public var expiresAt: String
    public var refreshAt: String
    public var connection: Connection

    /// Where the credential is used: postgres `host, port, database, sslmode`; redis
    /// `host, port, tls`; vault `address, namespace`; any kind `ca_file` when configured.
    public struct Connection: Sendable, Decodable {
        public var host: String?
        public var port: Int?
        public var database: String?
        public var sslmode: String?
        public var tls: Bool?
        public var address: String?
        public var namespace: String?
        /// The CA bundle the agent's config names for verifying the server.
        public var caFile: String?
        /// The name the server's certificate must carry, when it is not the address's host (Vault).
        public var tlsServerName: String?

        private enum CodingKeys: String, CodingKey {
            case host, port, database, sslmode, tls, address, namespace
            case caFile = "ca_file"
            case tlsServerName = "tls_server_name"
        }
    }

    /// The secret of the credential: the password, or Vault's token.
    public var secret: Secret? { password ?? token }
}

extension AgentCredential: Decodable {
    private enum Keys: String, CodingKey {
        case name, kind, provider, version, username, password, token, accessor, renewable, connection
        case leaseDuration = "lease_duration", issuedAt = "issued_at", expiresAt = "expires_at", refreshAt = "refresh_at"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        name = try container.decode(String.self, forKey: .name)
        kind = try container.decode(String.self, forKey: .kind)
        provider = try container.decode(String.self, forKey: .provider)
        version = try container.decode(Int.self, forKey: .version)
        username = try container.decodeIfPresent(String.self, forKey: .username)
        password = try container.decodeIfPresent(String.self, forKey: .password).map(Secret.init)
        token = try container.decodeIfPresent(String.self, forKey: .token).map(Secret.init)
        accessor = try container.decodeIfPresent(String.self, forKey: .accessor)
        renewable = try container.decodeIfPresent(Bool.self, forKey: .renewable)
        leaseDuration = try container.decodeIfPresent(Int.self, forKey: .leaseDuration)
        issuedAt = try container.decode(String.self, forKey: .issuedAt)
        expiresAt = try container.decode(String.self, forKey: .expiresAt)
        refreshAt = try container.decode(String.self, forKey: .refreshAt)
        connection = try container.decode(Connection.self, forKey: .connection)
    }
}

/// One row of `GET /v1/credentials`: no secrets.
public struct CredentialSummary: Sendable, Decodable {
    public var name: String
    public var kind: String
    public var provider: String
    public var state: String
    public var version: Int
    public var expiresAt: String?
    public var refreshAt: String?
    public var lastError: String?

    private enum CodingKeys: String, CodingKey {
        case name, kind, provider, state, version
        case expiresAt = "expires_at", refreshAt = "refresh_at", lastError = "last_error"
    }
}

/// Why a request to the agent failed.
public struct AgentClientError: Error, Sendable, CustomStringConvertible {
    /// Nothing answered on the socket (CLI exit code 3).
    public var unreachable: Bool
    /// The HTTP status the agent answered with, when it answered.
    public var status: Int?
    /// The agent's error code (`not_found`, `forbidden`, `unavailable`, ...), when it said.
    public var code: String?
    public var message: String

    public var description: String { message }
}

/// Talks to a running agent over its Unix socket (the socket API of docs/API.md). Used by
/// `credagent get`, `list` and `test`.
public struct AgentClient: Sendable {
    public let socketPath: String
    private let http: any HTTPClient

    /// `$CREDAGENT_SOCKET`, else `/run/credagent/agent.sock`.
    public static func defaultSocketPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        environment["CREDAGENT_SOCKET"].flatMap { $0.isEmpty ? nil : $0 } ?? SocketConfig.defaultPath
    }

    public init(socketPath: String, http: any HTTPClient = CurlHTTPClient()) {
        self.socketPath = socketPath
        self.http = http
    }

    /// The credential `name`, refreshed first when less than `minValid` seconds of it would remain.
    public func credential(name: String, minValid: Int? = nil) async throws -> AgentCredential {
        try decode(AgentCredential.self, from: try await credentialJSON(name: name, minValid: minValid))
    }

    /// The credential's JSON exactly as the agent sent it.
    public func credentialJSON(name: String, minValid: Int? = nil) async throws -> [UInt8] {
        guard ConfigParser.isValidName(name) else {
            throw AgentClientError(unreachable: false, status: nil, code: "invalid_name",
                                   message: "'\(name)' is not a credential name ([a-z0-9][a-z0-9._-]{0,62})")
        }
        let query = minValid.map { "?min_valid=\($0)" } ?? ""
        return try await send("GET", "/v1/credentials/\(name)\(query)")
    }

    /// The longest long poll ``credentialJSON(name:changedFrom:waitingUpTo:)`` asks for: it ends
    /// well within the client's total timeout.
    public static let longestWait = 45

    /// The credential's JSON as soon as its version differs from `version` (at once if it
    /// already does), or nil when it has not changed within `seconds` (at most ``longestWait``).
    public func credentialJSON(name: String, changedFrom version: Int, waitingUpTo seconds: Int) async throws -> [UInt8]? {
        guard ConfigParser.isValidName(name) else {
            throw AgentClientError(unreachable: false, status: nil, code: "invalid_name",
                                   message: "'\(name)' is not a credential name ([a-z0-9][a-z0-9._-]{0,62})")
        }
        let wait = min(max(seconds, 1), Self.longestWait)
        do {
            return try await send("GET", "/v1/credentials/\(name)?wait=\(wait)&version=\(version)")
        } catch let error as AgentClientError where error.status == 304 {
            return nil
        }
    }

    /// Forces a refresh of `name` and returns the new credential.
    public func refresh(name: String) async throws -> AgentCredential {
        try decode(AgentCredential.self, from: try await send("POST", "/v1/credentials/\(name)/refresh"))
    }

    /// Every credential's state, without secrets.
    public func list() async throws -> [CredentialSummary] {
        struct Listing: Decodable { var credentials: [CredentialSummary] }
        return try decode(Listing.self, from: try await send("GET", "/v1/credentials")).credentials
    }

    private func send(_ method: String, _ path: String) async throws -> [UInt8] {
        let request = HTTPRequest(method: method, url: "http://localhost\(path)",
                                  timeouts: HTTPTimeouts(connect: 2, total: 60), unixSocketPath: socketPath)
        let response: HTTPResponse
        do {
            response = try await http.execute(request)
        } catch {
            throw AgentClientError(unreachable: true, status: nil, code: nil,
                                   message: "no agent answers on \(socketPath): \(error) (is `credagent run` running? set --socket or CREDAGENT_SOCKET)")
        }
        guard response.isSuccess else {
            struct Failure: Decodable {
                struct Detail: Decodable { var code: String; var message: String }
                var error: Detail
            }
            let detail = try? JSONDecoder().decode(Failure.self, from: Data(response.body)).error
            throw AgentClientError(unreachable: false, status: response.status, code: detail?.code,
                                   message: "agent answered \(response.status) for \(method) \(path.prefix { $0 != "?" }): "
                                       + (detail?.message ?? "no error detail"))
        }
        return response.body
    }

    private func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch {
            throw AgentClientError(unreachable: false, status: nil, code: "malformed_response",
                                   message: "the agent on \(socketPath) sent JSON this client does not understand")
        }
    }
}
