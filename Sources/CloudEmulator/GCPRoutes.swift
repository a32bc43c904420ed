import CloudAuth
import Foundation

/// The GCP listener: the metadata server's service-account endpoints, Google's OAuth token
/// endpoint for service-account key assertions, and the GCP issuer's discovery documents.
extension CloudEmulator {
    private static let metadataPrefix = "/computeMetadata/v1/instance/service-accounts/"

    func routeGCP(_ request: EmulatorRequest) -> EmulatorResponse {
        if request.method == "GET", request.path.hasPrefix(Self.metadataPrefix) {
            let rest = request.path.dropFirst(Self.metadataPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
            if rest.count == 2 {
                let account = PercentEncoding.decode(rest[0])
                let refusal = metadataRefusal(request, account: account)
                switch rest[1] {
                case "token":
                    return respond(.gcpMetadataToken) { refusal ?? metadataToken(request, expired: $0) }
                case "identity":
                    return respond(.gcpMetadataIdentity) { refusal ?? metadataIdentity(request, expired: $0) }
                case "email":
                    return respond(.gcpMetadataEmail) { _ in refusal ?? .text(200, configuration.gcpServiceAccountEmail) }
                default: break
                }
            }
        }
        switch (request.method, request.path) {
        case ("POST", "/gcp/token"):
            return respond(.gcpOAuthToken) { oauthToken(request, expired: $0) }
        case ("GET", "/gcp/.well-known/openid-configuration"):
            return respond(.gcpDiscovery) { _ in
                discoveryDocument(issuer: gcpIssuer, jwksURI: "\(gcpIssuer)/oauth2/v3/certs", tokenEndpoint: gcpTokenURI)
            }
        case ("GET", "/gcp/oauth2/v3/certs"):
            return respond(.gcpDiscovery) { _ in jwks() }
        case ("GET", "/gcp/service_accounts/v1/jwk/\(configuration.gcpServiceAccountEmail)"):
            return respond(.gcpDiscovery) { _ in serviceAccountJWKS() }
        case ("POST", "/v1/projects/-/serviceAccounts/\(configuration.gcpServiceAccountEmail):signJwt"):
            return respond(.gcpSignJWT) { _ in signJWT(request) }
        default:
            var response = EmulatorResponse.text(404, "Not Found", contentType: "text/html; charset=UTF-8")
            if request.path.hasPrefix("/computeMetadata/") { response.headers.add("Metadata-Flavor", "Google") }
            return response
        }
    }

    /// The checks every metadata request passes first: the `Metadata-Flavor: Google` request
    /// header (403 without it, as GCE answers) and a known service account (404). Nil: passed.
    private func metadataRefusal(_ request: EmulatorRequest, account: String) -> EmulatorResponse? {
        guard request.headers["metadata-flavor"] == "Google" else {
            return .text(403, "Your client does not have permission to get URL \(request.path) from this server. Missing Metadata-Flavor:Google header.",
                         contentType: "text/html; charset=UTF-8")
        }
        guard account == "default" || account == configuration.gcpServiceAccountEmail else {
            return .text(404, "Not Found", contentType: "text/html; charset=UTF-8")
        }
        return nil
    }

    private func metadataToken(_ request: EmulatorRequest, expired: Bool) -> EmulatorResponse {
        let validity = validity(expired: expired)
        return .json(200, [
            "access_token": issueOpaqueToken(expiresAt: validity.expiresAt),
            "expires_in": validity.expiresAt - Int(Date().timeIntervalSince1970), "token_type": "Bearer",
        ])
    }

    private func metadataIdentity(_ request: EmulatorRequest, expired: Bool) -> EmulatorResponse {
        guard let audience = request.parameter("audience"), !audience.isEmpty else {
            return .text(400, "non-empty audience parameter required", contentType: "text/html; charset=UTF-8")
        }
        let token = gcpIdentityToken(audience: audience, authorizedParty: configuration.gcpServiceAccountID,
                                     full: request.parameter("format") == "full", validity: validity(expired: expired))
        return .text(200, token, contentType: "text/html; charset=UTF-8")
    }

    /// Google's token endpoint for the jwt-bearer grant: the assertion must be signed by the
    /// service-account key this emulator handed out, name its email as `iss`, Google's or this
    /// token endpoint as `aud`, live at most an hour, and ask for a `scope` or a `target_audience`.
    private func oauthToken(_ request: EmulatorRequest, expired: Bool) -> EmulatorResponse {
        let form = Dictionary(request.form.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        func grantError(_ description: String, _ error: String = "invalid_grant") -> EmulatorResponse {
            .json(400, ["error": error, "error_description": description])
        }
        guard form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer" else {
            return grantError("Invalid grant_type: \(form["grant_type"] ?? "")", "unsupported_grant_type")
        }
        guard let assertion = try? JWT.decode(form["assertion"] ?? "", source: "assertion") else {
            return grantError("Invalid JWT: the assertion is not a JWT.")
        }
        guard assertion.hasValidSignature(key: serviceAccountKey) else { return grantError("Invalid JWT Signature.") }
        guard assertion.string("iss") == configuration.gcpServiceAccountEmail else {
            return grantError("Invalid grant: account not found")
        }
        // Google documents the audience as always its public token endpoint (google-auth sends
        // that); clients that use the key's token_uri instead (golang.org/x/oauth2) send ours.
        guard assertion.audiences == [gcpTokenURI] || assertion.audiences == ["https://oauth2.googleapis.com/token"] else {
            return grantError("Invalid JWT: audience must be https://oauth2.googleapis.com/token or \(gcpTokenURI).")
        }
        let now = Date()
        guard let issued = assertion.date("iat"), let expiry = assertion.date("exp"),
              expiry.timeIntervalSince(issued) <= 3600, expiry > now, issued < now.addingTimeInterval(300) else {
            return grantError("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
        }
        let validity = validity(expired: expired)
        if let audience = assertion.string("target_audience"), !audience.isEmpty {
            let token = gcpIdentityToken(audience: audience, authorizedParty: configuration.gcpServiceAccountEmail,
                                         full: false, validity: validity)
            return .json(200, ["id_token": token])
        }
        guard let scope = assertion.string("scope"), !scope.isEmpty else {
            return grantError("Invalid OAuth scope or ID token audience provided.", "invalid_scope")
        }
        return .json(200, [
            "access_token": issueOpaqueToken(expiresAt: validity.expiresAt),
            "expires_in": validity.expiresAt - Int(now.timeIntervalSince1970), "token_type": "Bearer",
        ])
    }

    /// The public half of the service-account key, as Google publishes it for each account
    /// (`/service_accounts/v1/jwk/{email}`): what verifies JWTs from ``signJWT(_:)``.
    private func serviceAccountJWKS() -> EmulatorResponse {
        let (modulus, exponent) = serviceAccountKey.publicComponents()
        return .json(200, ["keys": [[
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": serviceAccountKeyID,
            "n": Encoding.base64URL(modulus), "e": Encoding.base64URL(exponent),
        ] as [String: any Sendable]]])
    }

    /// IAM Credentials `signJwt`: signs the caller's JSON claims with the service account's key.
    /// The caller must hold an access token this emulator issued, as the real API requires OAuth.
    private func signJWT(_ request: EmulatorRequest) -> EmulatorResponse {
        func googleError(_ status: Int, _ state: String, _ message: String) -> EmulatorResponse {
            .json(status, ["error": ["code": status, "message": message, "status": state] as [String: any Sendable]])
        }
        let bearer = request.headers["authorization"].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        guard let bearer, let expiry = expiryOfIssued(bearer, as: .opaqueAccessToken), expiry > Int(Date().timeIntervalSince1970) else {
            return googleError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        }
        guard let body = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
              let payload = body["payload"] as? String,
              let claims = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] else {
            return googleError(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Expected a 'payload' string holding a JSON object.")
        }
        let now = Int(Date().timeIntervalSince1970)
        if let exp = (claims["exp"] as? NSNumber)?.intValue, exp > now + 43_200 {
            return googleError(400, "INVALID_ARGUMENT", "The exp claim is more than 12 hours in the future.")
        }
        var signed: [String: any Sendable] = ["iat": now, "exp": now + 3600]
        for (name, value) in claims {
            switch value {
            case let text as String: signed[name] = text
            case let number as NSNumber: signed[name] = number.intValue
            default: continue
            }
        }
        guard let jwt = try? JWT.sign(claims: signed, key: serviceAccountKey, keyID: serviceAccountKeyID) else {
            return googleError(500, "INTERNAL", "signing failed")
        }
        return .json(200, ["keyId": serviceAccountKeyID, "signedJwt": jwt])
    }
}
