import CloudAuth
import CredentialModel
import Foundation

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
    /// The kind of the last failure (`timeout`, `rejected`, ...; docs/API.md).
    public var lastErrorCode: String?

    private enum CodingKeys: String, CodingKey {
        case name, kind, provider, state, version
        case expiresAt = "expires_at", refreshAt = "refresh_at", lastError = "last_error", lastErrorCode = "last_error_code"
    }
}

/// Why a request to the agent failed.
public struct AgentClientError: Error, Sendable, CustomStringConvertible {
    /// No trusted agent answered on the socket: nothing answered, or the process serving it runs
    /// as an untrusted uid (code `untrusted_server`) (CLI exit code 3).
    public var unreachable: Bool
    /// The HTTP status the agent answered with, when it answered.
    public var status: Int?
    /// The agent's error code (`not_found`, `forbidden`, `unavailable`, ...), when it said.
    public var code: String?
    public var message: String

    public var description: String { message }
}

/// Talks to a running agent over its Unix socket (the socket API of docs/API.md). Used by
/// `credagent get`, `list`, `test`, `health` and `wait`.
///
/// Before sending anything it checks who serves the socket (`SO_PEERCRED`): root, this process's
/// uid, or the `serverUID` given. Anyone who could put a socket in the agent's place would
/// otherwise hand out credentials of their own.
public struct AgentClient: Sendable {
    public let socketPath: String
    /// The uids the agent may run as.
    public let trustedServerUIDs: Set<UInt32>
    private let http: any HTTPClient

    /// `$CREDAGENT_SOCKET`, else `/run/credagent/agent.sock`.
    public static func defaultSocketPath(environment: (String) -> String? = environmentVariable) -> String {
        environment("CREDAGENT_SOCKET").flatMap { $0.isEmpty ? nil : $0 } ?? SocketConfig.defaultPath
    }

    /// `$CREDAGENT_SERVER_UID` when set: the uid the agent runs as, when neither root nor the
    /// client's own. A user name is looked up; anything else is a usage error.
    public static func defaultServerUID(environment: (String) -> String? = environmentVariable) throws -> UInt32? {
        guard let value = environment("CREDAGENT_SERVER_UID"), !value.isEmpty else { return nil }
        return try serverUID(parsing: value, from: "CREDAGENT_SERVER_UID")
    }

    /// The process's environment variable `name`, nil when unset. Read alone: building
    /// `ProcessInfo.environment`'s dictionary was a tenth of `credagent health`'s run.
    public static func environmentVariable(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// The uid `text` names: a number, or a user name from the user database.
    public static func serverUID(parsing text: String, from origin: String) throws -> UInt32 {
        if let uid = UInt32(text) { return uid }
        if let entry = getpwnam(text) { return entry.pointee.pw_uid }
        throw AgentClientError(unreachable: false, status: nil, code: "invalid_server_uid",
                               message: "\(origin): '\(text)' is neither a uid nor a known user name")
    }

    /// - Parameter serverUID: the uid the agent runs as, when it is neither root nor this
    ///   process's uid.
    public init(socketPath: String, serverUID: UInt32? = nil, http: any HTTPClient = UnixSocketHTTPClient()) {
        self.socketPath = socketPath
        self.trustedServerUIDs = UntrustedSocketPeer.trustedUIDs(serverUID: serverUID)
        self.http = http
    }

    /// The credential `name`, refreshed first when less than `minValid` seconds of it would remain.
    public func credential(name: String, minValid: Int? = nil) async throws -> ServedCredential {
        try decode(ServedCredential.self, from: try await credentialJSON(name: name, minValid: minValid))
    }

    /// The credential's JSON exactly as the agent sent it.
    public func credentialJSON(name: String, minValid: Int? = nil) async throws -> [UInt8] {
        guard CredentialName.isValid(name) else {
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
        guard CredentialName.isValid(name) else {
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
    public func refresh(name: String) async throws -> ServedCredential {
        try decode(ServedCredential.self, from: try await send("POST", "/v1/credentials/\(name)/refresh"))
    }

    /// Every credential's state, without secrets.
    public func list() async throws -> [CredentialSummary] {
        struct Listing: Decodable { var credentials: [CredentialSummary] }
        return try decode(Listing.self, from: try await send("GET", "/v1/credentials")).credentials
    }

    /// Succeeds while the agent serves (`GET /v1/health`).
    public func health() async throws {
        _ = try await send("GET", "/v1/health")
    }

    /// Succeeds when every credential is servable (`GET /v1/ready`); otherwise throws with status 503.
    public func ready() async throws {
        _ = try await send("GET", "/v1/ready")
    }

    private func send(_ method: String, _ path: String) async throws -> [UInt8] {
        let request = HTTPRequest(method: method, url: "http://localhost\(path)",
                                  timeouts: HTTPTimeouts(connect: 2, total: 60), unixSocketPath: socketPath,
                                  trustedServerUIDs: trustedServerUIDs)
        let response: HTTPResponse
        do {
            response = try await http.execute(request)
        } catch let error as UntrustedSocketPeer {
            throw AgentClientError(unreachable: true, status: nil, code: "untrusted_server", message: "\(error)")
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
