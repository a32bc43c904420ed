/// Why the proxy refuses a client, with the SQLSTATE and message the client is told (they name the
/// credential and the fix, never a secret) and the reason label counted in the metrics.
public enum ProxyRefusal: Error, Equatable, Sendable {
    /// The proxy's `max_connections` are in use.
    case tooManyConnections(credential: String, limit: Int)
    /// The connecting process's uid and gid are not in the proxy's `allow`.
    case peerNotAllowed(credential: String, uid: UInt32?)
    /// The client named another database user than the credential's.
    case userMismatch(credential: String, expected: String, given: String)
    /// The credential has no current secret yet (or it expired).
    case noCredential(credential: String)
    /// The upstream server could not be reached or its TLS failed.
    case upstreamUnreachable(credential: String, reason: String)
    /// The upstream server refused the token.
    case tokenRejected(credential: String, serverMessage: String)
    /// The upstream server broke the protocol or asked for an unsupported authentication.
    case upstreamProtocol(credential: String, reason: String)
    /// The client did not finish its startup in time.
    case handshakeTimeout(credential: String, seconds: Int)
    /// The client sent something that is not a valid startup packet.
    case badStartup(credential: String, sqlState: String, message: String)

    /// The SQLSTATE of the ErrorResponse.
    public var sqlState: String {
        switch self {
        case .tooManyConnections: "53300"
        case .peerNotAllowed, .userMismatch, .tokenRejected: "28000"
        case .noCredential, .upstreamUnreachable, .upstreamProtocol: "08006"
        case .handshakeTimeout: "08P01"
        case let .badStartup(_, sqlState, _): sqlState
        }
    }

    /// The ErrorResponse's message.
    public var message: String {
        switch self {
        case let .tooManyConnections(credential, limit):
            "credagent proxy for \(credential): too many connections (max_connections is \(limit))"
        case let .peerNotAllowed(credential, uid):
            "credagent proxy for \(credential): this process (uid \(uid.map(String.init) ?? "unknown")) may not use it; see its proxy.allow"
        case let .userMismatch(credential, expected, given):
            "credagent proxy for \(credential): user \"\(given)\" is not the credential's user; connect as \"\(expected)\" or without a user"
        case let .noCredential(credential):
            "credagent proxy for \(credential): the credential has no valid token yet; see credagent list"
        case let .upstreamUnreachable(credential, reason):
            "credagent proxy for \(credential): cannot connect to the database: \(reason)"
        case let .tokenRejected(credential, serverMessage):
            "credagent proxy for \(credential): the database rejected the credential's token: \(serverMessage)"
        case let .upstreamProtocol(credential, reason):
            "credagent proxy for \(credential): the database handshake failed: \(reason)"
        case let .handshakeTimeout(credential, seconds):
            "credagent proxy for \(credential): the startup was not completed within \(seconds) s"
        case let .badStartup(credential, _, message):
            "credagent proxy for \(credential): \(message)"
        }
    }

    /// The `reason` label of the rejected-connections metric.
    public var metricReason: String {
        switch self {
        case .tooManyConnections: "too_many_connections"
        case .peerNotAllowed: "peer_not_allowed"
        case .userMismatch: "user_mismatch"
        case .noCredential: "no_credential"
        case .upstreamUnreachable: "upstream_unreachable"
        case .tokenRejected: "token_rejected"
        case .upstreamProtocol: "upstream_protocol"
        case .handshakeTimeout: "handshake_timeout"
        case .badStartup: "bad_startup"
        }
    }
}
