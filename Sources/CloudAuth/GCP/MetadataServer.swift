import Foundation

/// The GCE/GKE metadata server's service-account endpoints. Every request carries
/// `Metadata-Flavor: Google`, and every answer must carry it back: anything else (a proxy, a
/// captive portal, a stranger on the address) is refused.
struct MetadataServer: Sendable {
    let host: String
    let http: any HTTPClient

    private func accountURL(_ account: String, _ leaf: String) -> String {
        "http://\(host)/computeMetadata/v1/instance/service-accounts/\(GCPIdentity.pathComponent(account: account))/\(leaf)"
    }

    func accessToken(account: String, scopes: [String], now: Date) async throws -> AccessToken {
        let path = accountURL(account, "token")
        let source = "GCP metadata server \(path)"
        let url = scopes.isEmpty ? path : path + "?" + FormEncoding.encode([("scopes", scopes.joined(separator: ","))])
        let response = try await get(url, source: source)
        let object = try TokenEndpoint.jsonObject(response, source: source)
        return try TokenEndpoint.accessToken(
            try TokenEndpoint.requiredString(object, "access_token", source: source), now: now, expiresOn: nil,
            expiresIn: JSONFields.number(object["expires_in"]), source: source)
    }

    func identityToken(account: String, audience: String, now: Date) async throws -> AccessToken {
        let path = accountURL(account, "identity")
        let source = "GCP metadata server \(path)"
        let url = path + "?" + FormEncoding.encode([("audience", audience), ("format", "full")])
        let response = try await get(url, source: source)
        let token = response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines)
        return try IdentityTokenTimes.accessToken(token, now: now, source: source)
    }

    func email(account: String) async throws -> String {
        let url = accountURL(account, "email")
        let response = try await get(url, source: "GCP metadata server \(url)")
        let email = response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines)
        guard email.contains("@"), !email.contains(" ") else {
            throw CloudAuthError(.malformedResponse, source: "GCP metadata server \(url)", "the answer is not an email address")
        }
        return email
    }

    private func get(_ url: String, source: String) async throws -> HTTPResponse {
        let response = try await http.execute(HTTPRequest(url: url, headers: ["Metadata-Flavor": "Google"],
                                                          timeouts: .metadata, maxResponseBytes: 64 << 10))
        guard response.headers["metadata-flavor"] == "Google" else {
            throw CloudAuthError(.malformedResponse, source: source,
                                 "the answer (HTTP \(response.status)) lacks the 'Metadata-Flavor: Google' header, so it is not from a metadata server",
                                 remedy: "check GCE_METADATA_HOST / gcp.metadata_host and that no proxy intercepts the request")
        }
        guard response.isSuccess else {
            throw TokenEndpoint.failure(response, source: source,
                                        remedy: response.status == 404 ? "check that the service account is attached to this instance" : nil)
        }
        return response
    }
}

/// Issue and expiry times of an identity token, read from its claims (the token is not verified:
/// its audience does that).
enum IdentityTokenTimes {
    static func accessToken(_ token: String, now: Date, source: String) throws -> AccessToken {
        let decoded = try JWT.decode(token, source: source)
        guard let expiry = decoded.date("exp") else {
            throw CloudAuthError(.malformedResponse, source: source, "the identity token has no 'exp' claim")
        }
        return try TokenEndpoint.accessToken(token, now: now, issuedAt: decoded.date("iat"),
                                             expiresOn: expiry.timeIntervalSince1970, expiresIn: nil, source: source)
    }
}
