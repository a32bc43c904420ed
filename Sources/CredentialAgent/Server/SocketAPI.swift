import CloudAuth
import CredentialModel
import Foundation
import NIOCore
import NIOHTTP1

/// One answer of the socket API as a value, before it is framed for the connection.
struct APIResponse {
    var status: HTTPResponseStatus
    var body: ByteBuffer?
    var contentType = "application/json"
    /// Adds `cache-control: no-store`.
    var carriesSecret = false
    var extraHeaders: [(String, String)] = []
    /// The template of the route, the `route` label of request metrics.
    var route: String
    /// A served credential's whole HTTP/1.1 keep-alive response, prebuilt with its snapshot:
    /// written as it is when the request allows.
    var keepAliveResponse: ByteBuffer?

    /// `{"error":{"code":...,"message":...}}` with `status`, plus `last_error_code` when a
    /// refresh `failure` is the cause.
    static func error(_ status: HTTPResponseStatus, _ code: String, _ message: String, failure: RefreshFailure? = nil,
                      extraHeaders: [(String, String)] = [], route: String) -> APIResponse {
        var fields: [(String, JSONValue)] = [("code", .string(code)), ("message", .string(message))]
        if let failure { fields.append(("last_error_code", .string(failure.code.description))) }
        let body = JSONValue.object([("error", .object(fields))])
        return APIResponse(status: status, body: ByteBuffer(bytes: body.bytes), extraHeaders: extraHeaders, route: route)
    }

    /// The response as bytes: status line, headers and body, framed for the request's HTTP
    /// version and whether the connection stays open; `allocator` is asked only when the
    /// prebuilt response does not serve.
    func encoded(_ framing: ConnectionStateMachine.ResponseFraming, allocator: @autoclosure () -> ByteBufferAllocator) -> ByteBuffer {
        if framing.keepAlive, framing.version == .http1_1, let keepAliveResponse { return keepAliveResponse }
        var out = allocator().buffer(capacity: 160 + (body?.readableBytes ?? 0))
        out.writeString("HTTP/\(framing.version.major).\(framing.version.minor) \(status.code) \(status.reasonPhrase)\r\n")
        if let body {
            out.writeString("content-type: \(contentType)\r\ncontent-length: \(body.readableBytes)\r\n")
        } else {
            out.writeString("content-length: 0\r\n")
        }
        if carriesSecret { out.writeString("cache-control: no-store\r\n") }
        if !framing.keepAlive {
            out.writeString("connection: close\r\n")
        } else if framing.version.major == 1, framing.version.minor == 0 {
            out.writeString("connection: keep-alive\r\n")
        }
        for (name, value) in extraHeaders { out.writeString("\(name): \(value)\r\n") }
        out.writeString("\r\n")
        if var body = self.body { out.writeBuffer(&body) }
        return out
    }
}

/// What the socket API does with a request: answer now, or wait and then answer.
enum APIAnswer {
    case respond(APIResponse)
    /// Wait up to `wait` for a version of `name` other than `version` (a long poll).
    case longPoll(name: String, version: Int, wait: TimeAmount)
    /// Wait for `refresher` (forced, or for a credential valid `minValid` seconds more), then
    /// answer through ``SocketAPI/refreshed(_:name:force:route:)``.
    case refresh(CredentialRefresher, minValid: TimeInterval, force: Bool, route: String)
}

/// Whether one connection's peer may read secrets, checked once per policy generation.
struct PeerAccess {
    /// The peer's credentials from `SO_PEERCRED`; nil when the socket could not tell.
    var peer: UnixPeerCredentials?
    private var verdict: (generation: Int, allowed: Bool)?

    init(peer: UnixPeerCredentials? = nil) {
        self.peer = peer
    }

    /// Whether the peer may read secrets under the current policy.
    mutating func mayReadSecrets(_ shared: ServerContext) -> Bool {
        let generation = shared.currentPolicyGeneration
        if let verdict, verdict.generation == generation { return verdict.allowed }
        let allowed = peer.map { shared.policy.allows($0) } ?? false
        verdict = (generation, allowed)
        return allowed
    }

    /// Whether the last verdict was reached under the current policy.
    func verdictIsCurrent(_ shared: ServerContext) -> Bool {
        verdict?.generation == shared.currentPolicyGeneration
    }
}

/// The endpoints of the socket API (docs/API.md): requests in, response values out. Reads the
/// store and the refreshers; writes nothing to the connection.
struct SocketAPI {
    let shared: ServerContext

    /// The answer to `head` from a peer with `access`.
    func answer(_ head: HTTPRequestHead, access: inout PeerAccess) -> APIAnswer {
        let route: Route
        switch Route.parse(method: head.method.rawValue, uri: head.uri) {
        case let .success(parsed): route = parsed
        case .failure(.notFound):
            return .respond(.error(.notFound, "not_found", "no such route: \(head.method.rawValue) \(Self.pathOnly(head.uri))",
                                   route: "unknown"))
        case let .failure(.methodNotAllowed(allowed)):
            return .respond(.error(.methodNotAllowed, "method_not_allowed", "use \(allowed) on this path",
                                   extraHeaders: [("allow", allowed)], route: "unknown"))
        case let .failure(.badRequest(message, template)):
            return .respond(.error(.badRequest, "bad_request", message, route: template))
        }
        switch route {
        case .health:
            return .respond(APIResponse(status: .ok, body: Self.healthBody, route: route.template))
        case .ready:
            return .respond(ready())
        case .metrics:
            let text = shared.metrics.exposition(shared.store.snapshots(), now: shared.now())
            return .respond(APIResponse(status: .ok, body: ByteBuffer(bytes: text), contentType: "text/plain; version=0.0.4",
                                        route: route.template))
        case .list:
            return .respond(list())
        case let .credential(name, query):
            guard access.mayReadSecrets(shared) else { return .respond(forbidden(access.peer, route: route.template)) }
            guard let snapshot = shared.store.snapshot(name) else { return .respond(unknownCredential(name, route: route.template)) }
            if let wait = query.wait, let version = query.version {
                return .longPoll(name: name, version: version, wait: TimeAmount(.seconds(wait)))
            }
            if let minValid = query.minValid,
               !snapshot.machine.answersClient(minValid: minValid, force: false, at: shared.now()),
               let refresher = shared.refreshers[name] {
                return .refresh(refresher, minValid: minValid, force: false, route: route.template)
            }
            return .respond(serve(snapshot, route: route.template))
        case let .refresh(name):
            guard access.mayReadSecrets(shared) else { return .respond(forbidden(access.peer, route: route.template)) }
            guard let refresher = shared.refreshers[name] else { return .respond(unknownCredential(name, route: route.template)) }
            return .refresh(refresher, minValid: 0, force: true, route: route.template)
        }
    }

    /// The credential if servable, else 503 with when to retry.
    func serve(_ snapshot: CredentialSnapshot, route: String) -> APIResponse {
        let now = shared.now()
        guard let body = snapshot.servableBody(at: now) else { return unavailable(snapshot, at: now, route: route) }
        return APIResponse(status: .ok, body: body, carriesSecret: true, route: route,
                           keepAliveResponse: snapshot.servableKeepAliveResponse(at: now))
    }

    /// The answer after waiting for a refresh: the new credential, or when a `min_valid` refresh
    /// failed one that is still servable, only shorter-lived; else 503.
    func refreshed(_ result: Result<CredentialSnapshot, RefreshFailure>, name: String, force: Bool,
                   route: String) -> APIResponse {
        switch result {
        case let .success(snapshot):
            return serve(snapshot, route: route)
        case let .failure(failure):
            if !force, let snapshot = shared.store.snapshot(name), snapshot.machine.servable(at: shared.now()) != nil {
                return serve(snapshot, route: route)
            }
            return refreshFailed(name: name, failure, route: route)
        }
    }

    /// 503 for a credential without a servable secret.
    private func unavailable(_ snapshot: CredentialSnapshot, at now: Date, route: String) -> APIResponse {
        let machine = snapshot.machine
        let retry = max(1, Int(machine.nextFetch(now: now).timeIntervalSince(now).rounded(.up)))
        var message = "'\(snapshot.name)' has no valid credential (state \(machine.state(at: now).rawValue))"
        if let failure = machine.lastFailure { message += ": \(failure.message)" }
        return .error(.serviceUnavailable, "unavailable", message, failure: machine.lastFailure,
                      extraHeaders: [("retry-after", String(retry))], route: route)
    }

    /// 503 for a refresh asked for by the client that failed.
    private func refreshFailed(name: String, _ failure: RefreshFailure, route: String) -> APIResponse {
        .error(.serviceUnavailable, "refresh_failed", "refreshing '\(name)' failed: \(failure.message)", failure: failure,
               extraHeaders: [("retry-after", "1")], route: route)
    }

    /// 304: the long poll's version did not change in time, or the agent stops.
    var notModified: APIResponse { APIResponse(status: .notModified, route: Route.credentialTemplate) }

    /// 403 for a peer that may not read secrets (counted, and logged at a bounded rate).
    func forbidden(_ peer: UnixPeerCredentials?, route: String) -> APIResponse {
        shared.peerDenied(peer)
        return .error(.forbidden, "forbidden",
                      "this process (uid \(peer.map { String($0.uid) } ?? "unknown")) may not read secrets; see socket.allow",
                      route: route)
    }

    func unknownCredential(_ name: String, route: String) -> APIResponse {
        .error(.notFound, "not_found", "no credential named '\(name)'", route: route)
    }

    /// The error answer of a request the connection cannot go on after.
    func refusal(_ refusal: ConnectionStateMachine.Refusal) -> APIResponse {
        switch refusal {
        case .malformed:
            .error(.badRequest, "bad_request", "the request is not valid HTTP/1.1", route: "invalid")
        case .headerTooLarge:
            .error(.requestHeaderFieldsTooLarge, "header_too_large",
                   "request line and headers exceed \(shared.limits.maxHeaderBytes) bytes or \(shared.limits.maxHeaderFields) fields",
                   route: "invalid")
        case .bodyTooLarge:
            .error(.payloadTooLarge, "payload_too_large", "request bodies are limited to \(shared.limits.maxBodyBytes) bytes",
                   route: "invalid")
        case .timedOut:
            .error(.requestTimeout, "request_timeout", "the request did not arrive in time", route: "invalid")
        }
    }

    private func list() -> APIResponse {
        let now = shared.now()
        let items: [JSONValue] = shared.store.snapshots().map { snapshot in
            let machine = snapshot.machine
            return .object([
                ("name", .string(snapshot.name)), ("kind", .string(snapshot.config.kind.rawValue)),
                ("provider", .string(snapshot.config.provider.rawValue)),
                ("state", .string(snapshot.state(at: now).rawValue)), ("version", .int(snapshot.version)),
                ("expires_at", .timestamp(machine.held?.credential.expiresAt)),
                ("refresh_at", .timestamp(machine.held.map { _ in machine.nextFetch(now: now) })),
                ("last_error", .optional(machine.lastFailure?.message)),
                ("last_error_code", .optional(machine.lastFailure?.code.description)),
            ])
        }
        return APIResponse(status: .ok, body: ByteBuffer(bytes: JSONValue.object([("credentials", .array(items))]).bytes),
                           route: Route.list.template)
    }

    private func ready() -> APIResponse {
        let now = shared.now()
        let notReady = shared.store.snapshots().filter { $0.machine.servable(at: now) == nil }.map { JSONValue.string($0.name) }
        guard !notReady.isEmpty else {
            return APIResponse(status: .ok, body: ByteBuffer(string: #"{"status":"ready"}"#), route: Route.ready.template)
        }
        let body = JSONValue.object([("status", .string("not_ready")), ("not_ready", .array(notReady))])
        return APIResponse(status: .serviceUnavailable, body: ByteBuffer(bytes: body.bytes), route: Route.ready.template)
    }

    private static let healthBody = ByteBuffer(string: #"{"status":"ok"}"#)

    private static func pathOnly(_ uri: String) -> String {
        String(uri.prefix { $0 != "?" }.prefix(200))
    }
}
