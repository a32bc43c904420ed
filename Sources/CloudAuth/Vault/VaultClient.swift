import Foundation

/// Where a Vault (or OpenBao) server is and how to reach it.
public struct VaultEndpoint: Sendable, Equatable {
    /// `https://vault.internal:8200`; the API paths are appended.
    public var address: String
    /// Enterprise namespace sent as `X-Vault-Namespace`, when set.
    public var namespace: String?
    /// CA bundle and server name for TLS.
    public var tls: TLSOptions
    /// A Unix socket to send the requests through (a local Vault proxy's); `address` then only
    /// gives the scheme and the `Host`.
    public var unixSocketPath: String?
    /// For a local server (a Vault proxy): the uids it may run as, checked before a request is
    /// sent (``HTTPRequest/trustedServerUIDs``). Nil accepts any.
    public var trustedServerUIDs: Set<UInt32>?

    public init(address: String, namespace: String? = nil, tls: TLSOptions = TLSOptions(), unixSocketPath: String? = nil,
                trustedServerUIDs: Set<UInt32>? = nil) {
        self.address = address.hasSuffix("/") ? String(address.dropLast()) : address
        self.namespace = namespace
        self.tls = tls
        self.unixSocketPath = unixSocketPath
        self.trustedServerUIDs = trustedServerUIDs
    }
}

/// A Vault token as a login or renewal returns it (`auth` block).
public struct VaultToken: Sendable {
    public var clientToken: Secret
    /// The token's accessor: lets an operator look up or revoke it without knowing it.
    public var accessor: String
    public var policies: [String]
    /// Seconds the token lives from `issuedAt` (0 for a root token that never expires).
    public var leaseDuration: Int
    public var renewable: Bool
    /// When the login or renewal answered.
    public var issuedAt: Date

    public init(clientToken: Secret, accessor: String, policies: [String], leaseDuration: Int,
                renewable: Bool, issuedAt: Date) {
        self.clientToken = clientToken
        self.accessor = accessor
        self.policies = policies
        self.leaseDuration = leaseDuration
        self.renewable = renewable
        self.issuedAt = issuedAt
    }

    /// When the token stops working.
    public var expiresAt: Date { issuedAt.addingTimeInterval(TimeInterval(leaseDuration)) }
}

/// What `lookup-self` says about a token.
public struct VaultTokenInfo: Sendable {
    public var displayName: String
    public var policies: [String]
    /// Seconds left; 0 for a token that never expires.
    public var ttl: Int
    public var renewable: Bool
    public var accessor: String
}

/// A small client for Vault's auth API: login, renew-self, lookup-self and revoke-self.
///
/// Errors carry Vault's own `errors` list verbatim (Vault never echoes a token there; any text
/// equal to the token is still masked) and name the API path, never a header.
public struct VaultClient: Sendable {
    public let endpoint: VaultEndpoint
    private let http: any HTTPClient
    private let now: @Sendable () -> Date

    public init(endpoint: VaultEndpoint, http: any HTTPClient, now: @escaping @Sendable () -> Date = Date.init) {
        self.endpoint = endpoint
        self.http = http
        self.now = now
    }

    /// Logs in at `/v1/auth/{mount}/login` with a method's payload.
    public func login(mount: String, payload: [String: String]) async throws -> VaultToken {
        let trimmed = mount.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let body = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
        let json = try await call("POST", "auth/\(trimmed)/login", token: nil, body: Array(body))
        return try parseAuth(json, path: "auth/\(trimmed)/login")
    }

    /// Extends the token's lease (`/v1/auth/token/renew-self`), asking for `increment` seconds.
    public func renewSelf(_ token: Secret, increment: Int? = nil) async throws -> VaultToken {
        var payload: [String: Any] = [:]
        if let increment { payload["increment"] = "\(increment)s" }
        let body = try JSONSerialization.data(withJSONObject: payload)
        let json = try await call("POST", "auth/token/renew-self", token: token, body: Array(body))
        return try parseAuth(json, path: "auth/token/renew-self")
    }

    /// Describes the token (`/v1/auth/token/lookup-self`).
    public func lookupSelf(_ token: Secret) async throws -> VaultTokenInfo {
        let path = "auth/token/lookup-self"
        let json = try await call("GET", path, token: token, body: [])
        guard let data = json["data"] as? [String: Any] else {
            throw CloudAuthError(.malformedResponse, source: source(path), "the answer has no 'data' object")
        }
        return VaultTokenInfo(
            displayName: data["display_name"] as? String ?? "",
            policies: data["policies"] as? [String] ?? [],
            ttl: (data["ttl"] as? NSNumber)?.intValue ?? 0,
            renewable: data["renewable"] as? Bool ?? false,
            accessor: data["accessor"] as? String ?? "")
    }

    /// Revokes the token (`/v1/auth/token/revoke-self`).
    public func revokeSelf(_ token: Secret) async throws {
        _ = try await call("POST", "auth/token/revoke-self", token: token, body: [])
    }

    private func source(_ path: String) -> String {
        let url = (try? EndpointURL(parsing: "\(endpoint.address)/v1/\(path)"))?.redacted ?? "\(endpoint.address)/v1/\(path)"
        return "Vault \(url)"
    }

    private func call(_ method: String, _ path: String, token: Secret?, body: [UInt8]) async throws -> [String: Any] {
        var headers = HTTPHeaders()
        if let token { headers.add("X-Vault-Token", token.reveal()) }
        if let namespace = endpoint.namespace, !namespace.isEmpty { headers.add("X-Vault-Namespace", namespace) }
        if !body.isEmpty { headers.add("Content-Type", "application/json") }
        headers.add("X-Vault-Request", "true")
        let request = HTTPRequest(method: method, url: "\(endpoint.address)/v1/\(path)", headers: headers,
                                  body: body, timeouts: .standard, tls: endpoint.tls, unixSocketPath: endpoint.unixSocketPath,
                                  trustedServerUIDs: endpoint.trustedServerUIDs)
        let response = try await http.execute(request)
        let parsed = response.body.isEmpty ? [:] : (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
        guard response.isSuccess else {
            var message = "Vault answered HTTP \(response.status)"
            // Vault's messages may quote what it was sent or what an upstream answered: masked
            // (the token sent first of all) and bounded.
            if let errors = parsed?["errors"] as? [String], !errors.isEmpty {
                message += ": " + UpstreamText.excerpt(errors.map { mask($0, token) }.joined(separator: "; "))
            }
            let code: CloudAuthError.Code = response.status >= 500 || response.status == 429 ? .unavailable : .rejected
            throw CloudAuthError(code, source: source(path), message, remedy: remedy(for: response.status, path: path))
        }
        guard let parsed else {
            throw CloudAuthError(.malformedResponse, source: source(path), "the answer is not a JSON object")
        }
        return parsed
    }

    private func remedy(for status: Int, path: String) -> String? {
        switch status {
        case 400 where path.hasSuffix("/login"):
            return "check the role and that the identity matches the role's bound claims"
        case 403 where path.hasSuffix("/login"):
            return "the auth method refused this identity; check the role binding"
        case 403: return "the token is no longer valid; log in again"
        case 404: return "check the address and the auth mount path"
        case 503: return "Vault may be sealed or on standby"
        default: return nil
        }
    }

    private func mask(_ text: String, _ token: Secret?) -> String {
        guard let token, !token.isEmpty else { return text }
        return text.replacingOccurrences(of: token.reveal(), with: "<redacted>")
    }

    /// Vault's own ceiling for a lease (the system max TTL) is 32 days by default; ten years
    /// is beyond any configuration and marks a broken answer.
    private static let maximumLease = 10 * 365 * 86_400

    private func parseAuth(_ json: [String: Any], path: String) throws -> VaultToken {
        guard let auth = json["auth"] as? [String: Any] else {
            throw CloudAuthError(.malformedResponse, source: source(path), "the answer has no 'auth' object")
        }
        guard let clientToken = auth["client_token"] as? String, !clientToken.isEmpty else {
            throw CloudAuthError(.malformedResponse, source: source(path), "the 'auth' object has no client_token")
        }
        guard let lease = (auth["lease_duration"] as? NSNumber)?.intValue, (0...Self.maximumLease).contains(lease) else {
            throw CloudAuthError(.malformedResponse, source: source(path),
                                 "the 'auth' object has no lease_duration of 0 to \(Self.maximumLease) seconds")
        }
        return VaultToken(
            clientToken: Secret(clientToken),
            accessor: auth["accessor"] as? String ?? "",
            policies: auth["policies"] as? [String] ?? auth["token_policies"] as? [String] ?? [],
            leaseDuration: lease,
            renewable: auth["renewable"] as? Bool ?? false,
            issuedAt: now())
    }
}
