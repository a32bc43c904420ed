import CloudAuth
import Foundation

extension CloudEmulator {
    /// Issue and expiry times for a token issued now, honouring an injected `expiredToken`.
    struct Validity {
        var issuedAt: Int
        var expiresAt: Int
        var lifetime: Int { expiresAt - issuedAt }

        init(lifetime: TimeInterval, expired: Bool, now: Date = Date()) {
            let current = Int(now.timeIntervalSince1970)
            let seconds = max(1, Int(lifetime.rounded()))
            issuedAt = expired ? current - seconds - 120 : current
            expiresAt = issuedAt + seconds
        }
    }

    func validity(expired: Bool) -> Validity {
        Validity(lifetime: tokenLifetime, expired: expired)
    }

    /// Signs `claims` with the emulator's key and remembers the token.
    func issueJWT(_ claims: [String: any Sendable]) -> String {
        // Signing with a key generated in-process cannot fail short of libcrypto breaking.
        let token = (try? JWT.sign(claims: claims, key: signingKey, keyID: signingKeyID)) ?? ""
        remember(token, kind: .jwt, expiresAt: claims["exp"] as? Int ?? .max)
        return token
    }

    /// An opaque Google-style access token, remembered with its expiry.
    func issueOpaqueToken(expiresAt: Int) -> String {
        let token = "ya29.c." + Encoding.base64URL(Digest.randomBytes(96))
        remember(token, kind: .opaqueAccessToken, expiresAt: expiresAt)
        return token
    }

    /// An Azure access token (v1 claims, as managed identity tokens carry them).
    func azureAccessToken(resource: String, clientID: String, objectID: String, managedIdentityResource: String?,
                          validity: Validity) -> String {
        var claims: [String: any Sendable] = [
            "aud": resource, "iss": azureIssuer, "iat": validity.issuedAt, "nbf": validity.issuedAt,
            "exp": validity.expiresAt, "aio": Encoding.base64URL(Digest.randomBytes(24)), "appid": clientID,
            "appidacr": "2", "idp": azureIssuer, "idtyp": "app", "oid": objectID, "sub": objectID,
            "tid": configuration.tenantID, "uti": Encoding.base64URL(Digest.randomBytes(16)), "ver": "1.0",
        ]
        if let managedIdentityResource { claims["xms_mirid"] = managedIdentityResource }
        return issueJWT(claims)
    }

    /// A GCP identity token; `full` adds the `google.compute_engine` claims of `format=full`.
    func gcpIdentityToken(audience: String, authorizedParty: String, full: Bool, validity: Validity) -> String {
        var claims: [String: any Sendable] = [
            "aud": audience, "azp": authorizedParty, "email": configuration.gcpServiceAccountEmail,
            "email_verified": true, "iat": validity.issuedAt, "exp": validity.expiresAt, "iss": gcpIssuer,
            "sub": configuration.gcpServiceAccountID,
        ]
        if full {
            claims["google"] = ["compute_engine": [
                "instance_creation_timestamp": validity.issuedAt - 86_400, "instance_id": configuration.gcpInstanceID,
                "instance_name": configuration.gcpInstanceName, "project_id": configuration.gcpProjectID,
                "project_number": Int(configuration.gcpProjectNumber) ?? 0, "zone": configuration.gcpZone,
            ] as [String: any Sendable]]
        }
        return issueJWT(claims)
    }

    /// The OIDC discovery document of `issuer`, whose keys are at `jwksURI`.
    func discoveryDocument(issuer: String, jwksURI: String, tokenEndpoint: String) -> EmulatorResponse {
        .json(200, [
            "issuer": issuer, "jwks_uri": jwksURI, "token_endpoint": tokenEndpoint,
            "authorization_endpoint": issuer + "/authorize",
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["aud", "exp", "iat", "iss", "sub", "nbf", "email", "email_verified", "azp", "oid", "tid"],
        ])
    }

    /// The JWKS holding the signing key.
    func jwks() -> EmulatorResponse {
        let (modulus, exponent) = signingKey.publicComponents()
        return .json(200, ["keys": [[
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": signingKeyID,
            "n": Encoding.base64URL(modulus), "e": Encoding.base64URL(exponent),
        ] as [String: any Sendable]]])
    }

    /// Answers `request` at `endpoint`: the injected failure if one is armed, else `normal`
    /// (told whether to issue an expired token).
    func respond(_ endpoint: Endpoint, normal: (_ expired: Bool) -> EmulatorResponse) -> EmulatorResponse {
        var response: EmulatorResponse
        switch takeFailure(endpoint) {
        case nil:
            response = normal(false)
        case let .status(status, body):
            response = EmulatorResponse(status: status, headers: ["Content-Type": "application/json; charset=utf-8"],
                                        body: Array(body.utf8))
        case let .stall(seconds):
            response = normal(false)
            response.delay = seconds
        case .dropMetadataFlavor:
            response = normal(false)
            return EmulatorResponse(status: response.status,
                                    headers: HTTPHeaders(dictionaryLiteral: ("Content-Type", response.headers["content-type"] ?? "application/json")),
                                    body: response.body, delay: response.delay)
        case .malformedJSON:
            response = normal(false)
            response.body = Array(response.body.prefix(response.body.count / 2))
        case .expiredToken:
            response = normal(true)
        case let .body(status, contentType, body):
            response = EmulatorResponse(status: status, headers: ["Content-Type": contentType], body: Array(body.utf8))
        case .down:
            return .noAnswer
        }
        if endpoint.isGCPMetadata, response.headers["metadata-flavor"] == nil {
            response.headers.add("Metadata-Flavor", "Google")
        }
        return response
    }
}
