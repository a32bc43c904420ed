import Foundation

/// A Google service-account key file (`"type": "service_account"`): signs RS256 JWT assertions
/// and exchanges them at the key's `token_uri` (RFC 7523 jwt-bearer grant).
public struct ServiceAccountKey: Sendable {
    public let clientEmail: String
    public let privateKeyID: String?
    public let tokenURI: String
    public let projectID: String?
    let privateKey: RSAKey
    /// For errors: the file and where its path came from.
    let source: String

    static let grantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    static let defaultTokenURI = "https://oauth2.googleapis.com/token"
    /// An assertion is valid this long (Google's maximum).
    static let assertionLifetime: TimeInterval = 3600

    /// The bytes of the key file at `path`, read off the cooperative pool; `origin` says where the
    /// path came from (a config key or an env var), for the error.
    static func read(path: String, origin: String) async throws -> [UInt8] {
        do {
            return Array(try await LocalFile.read(path))
        } catch {
            throw CloudAuthError(.io, source: "\(path) (\(origin))", "cannot read the service account key file",
                                 remedy: "check that the file exists and this user may read it")
        }
    }

    /// Parses key file contents; `source` names the file for errors. Errors name the missing or bad
    /// field, never the key.
    public init(json: [UInt8], source: String) throws {
        guard let object = JSONFields.object(json) else {
            throw CloudAuthError(.invalidInput, source: source, "the service account key file is not a JSON object")
        }
        func field(_ name: String) throws -> String {
            guard let value = object[name] as? String, !value.isEmpty else {
                throw CloudAuthError(.invalidInput, source: source, "the service account key file has no '\(name)'",
                                     remedy: "download a new JSON key for the service account")
            }
            return value
        }
        let type = try field("type")
        guard type == "service_account" else {
            throw CloudAuthError(.invalidInput, source: source,
                                 "the credentials file is of type '\(type)', not 'service_account'",
                                 remedy: "use a service account JSON key, or run on GCP and use the metadata server")
        }
        clientEmail = try field("client_email")
        privateKey = try RSAKey(pem: try field("private_key"), source: "\(source) field 'private_key'")
        privateKeyID = object["private_key_id"] as? String
        tokenURI = (object["token_uri"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? Self.defaultTokenURI
        projectID = object["project_id"] as? String
        self.source = source
    }

    /// The signed assertion: `{iss, aud: token_uri, iat, exp}` plus `extra` (scope or target_audience).
    func assertion(now: Date, extra: [String: any Sendable]) throws -> Secret {
        let issued = Int(now.timeIntervalSince1970)
        var claims: [String: any Sendable] = [
            "iss": clientEmail, "aud": tokenURI, "iat": issued, "exp": issued + Int(Self.assertionLifetime),
        ]
        claims.merge(extra) { _, new in new }
        return Secret(try JWT.sign(claims: claims, key: privateKey, keyID: privateKeyID))
    }

    func accessToken(scopes: [String], http: any HTTPClient, now: Date) async throws -> AccessToken {
        let object = try await exchange(try assertion(now: now, extra: ["scope": scopes.joined(separator: " ")]), http: http)
        let source = tokenSource
        return try TokenEndpoint.accessToken(
            try TokenEndpoint.requiredString(object, "access_token", source: source), now: now, expiresOn: nil,
            expiresIn: JSONFields.number(object["expires_in"]), source: source)
    }

    func identityToken(audience: String, http: any HTTPClient, now: Date) async throws -> AccessToken {
        let object = try await exchange(try assertion(now: now, extra: ["target_audience": audience]), http: http)
        let token = try TokenEndpoint.requiredString(object, "id_token", source: tokenSource)
        return try IdentityTokenTimes.accessToken(token, now: now, source: tokenSource)
    }

    private var tokenSource: String { "Google token endpoint \(EndpointURL.stripQuery(tokenURI)) (key \(source))" }

    private func exchange(_ assertion: Secret, http: any HTTPClient) async throws -> [String: any Sendable] {
        let body = FormEncoding.encode([("grant_type", Self.grantType), ("assertion", assertion.reveal())])
        let response = try await http.execute(HTTPRequest(
            method: "POST", url: tokenURI,
            headers: ["Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"],
            body: Array(body.utf8), timeouts: .standard, maxResponseBytes: 64 << 10))
        guard response.isSuccess else {
            throw TokenEndpoint.failure(response, source: tokenSource,
                                        remedy: response.status == 400 || response.status == 401
                                            ? "check that the key is not deleted or disabled and the machine's clock is right" : nil)
        }
        return try TokenEndpoint.jsonObject(response, source: tokenSource)
    }
}
