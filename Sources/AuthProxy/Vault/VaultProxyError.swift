import Foundation
import NIOCore
import NIOHTTP1

/// An answer the Vault proxy gives itself instead of Vault's: a status, a message in Vault's
/// error shape (`{"errors":["..."]}`) that names the credential and the fix (never a token), and
/// the `reason` label counted in the rejected-connections metric.
struct VaultProxyError: Error, Equatable {
    var status: HTTPResponseStatus
    var message: String
    var metricReason: String

    /// The refusal the listener decided at accept (`max_connections`, a peer not in `allow`).
    static func refused(_ refusal: ProxyRefusal) -> VaultProxyError {
        let status: HTTPResponseStatus = switch refusal {
        case .peerNotAllowed: .forbidden
        case .tooManyConnections, .noCredential: .serviceUnavailable
        case .handshakeTimeout: .requestTimeout
        case .badStartup, .userMismatch: .badRequest
        case .upstreamUnreachable, .upstreamProtocol, .tokenRejected: .badGateway
        }
        return VaultProxyError(status: status, message: refusal.message, metricReason: refusal.metricReason)
    }

    static func missingRequestHeader(credential: String) -> VaultProxyError {
        VaultProxyError(
            status: .preconditionFailed,
            message: "credagent proxy for \(credential): the request has no 'X-Vault-Request: true' header; send it (the vault "
                + "and bao CLIs and Vault's API clients do) or set proxy.require_request_header: false",
            metricReason: "missing_request_header")
    }

    /// A request over loopback TCP addressed to a name other than this machine's (421).
    static func wrongHost(credential: String, _ why: String) -> VaultProxyError {
        VaultProxyError(status: .misdirectedRequest, message: "credagent proxy for \(credential): \(why)", metricReason: "wrong_host")
    }

    /// A request over loopback TCP that a web page made (403).
    static func browserRequest(credential: String, _ why: String) -> VaultProxyError {
        VaultProxyError(status: .forbidden, message: "credagent proxy for \(credential): \(why)", metricReason: "browser_request")
    }

    static func deniedPath(credential: String, path: String, prefix: String) -> VaultProxyError {
        VaultProxyError(
            status: .forbidden,
            message: "credagent proxy for \(credential): \(path) is denied by proxy.deny_paths (\(prefix)); call Vault for it "
                + "with a token of your own",
            metricReason: "denied_path")
    }

    static func revokeSelfRefused(credential: String) -> VaultProxyError {
        VaultProxyError(
            status: .forbidden,
            message: "credagent proxy for \(credential): auth/token/revoke-self is refused: it would revoke the token every "
                + "client of the proxy shares; a client that needs to revoke a token logs in with its own",
            metricReason: "denied_path")
    }

    static func badRequest(credential: String, _ why: String) -> VaultProxyError {
        VaultProxyError(status: .badRequest, message: "credagent proxy for \(credential): \(why)", metricReason: "bad_request")
    }

    static func wrappingRefused(credential: String, field: String) -> VaultProxyError {
        badRequest(credential: credential, "a request with \(field) is refused: a wrapped answer would carry the proxy's token "
            + "out (its wrapping token unwraps, anywhere, to what the answer holds: for auth/token/lookup-self the token itself); "
            + "wrap with a token of your own")
    }

    static func headersTooLarge(credential: String, limit: Int) -> VaultProxyError {
        VaultProxyError(status: .requestHeaderFieldsTooLarge,
                        message: "credagent proxy for \(credential): the request's headers exceed \(limit / 1024) KB",
                        metricReason: "bad_request")
    }

    static func requestTimeout(credential: String, seconds: Int64) -> VaultProxyError {
        VaultProxyError(status: .requestTimeout,
                        message: "credagent proxy for \(credential): the request was not completed within \(seconds) s "
                            + "(proxy.handshake_timeout)",
                        metricReason: "handshake_timeout")
    }

    static func noToken(credential: String) -> VaultProxyError {
        VaultProxyError(status: .serviceUnavailable,
                        message: "credagent proxy for \(credential): the credential has no valid Vault token yet; see credagent list",
                        metricReason: "no_credential")
    }

    static func upstreamUnreachable(credential: String, address: String, _ why: String) -> VaultProxyError {
        VaultProxyError(status: .badGateway, message: "credagent proxy for \(credential): cannot connect to Vault at \(address): \(why)",
                        metricReason: "upstream_unreachable")
    }

    static func upstreamFailed(credential: String, address: String, _ why: String) -> VaultProxyError {
        VaultProxyError(status: .badGateway, message: "credagent proxy for \(credential): Vault at \(address) did not answer: \(why)",
                        metricReason: "upstream_protocol")
    }

    static func unmaskableAnswer(credential: String, address: String, _ why: String) -> VaultProxyError {
        VaultProxyError(status: .badGateway, message: "credagent proxy for \(credential): Vault at \(address) \(why)",
                        metricReason: "upstream_protocol")
    }

    /// The response body: `{"errors":["MESSAGE"]}`.
    func body(allocator: ByteBufferAllocator) -> ByteBuffer {
        let data = (try? JSONSerialization.data(withJSONObject: ["errors": [message]])) ?? Data(#"{"errors":[]}"#.utf8)
        return allocator.buffer(bytes: data)
    }
}
