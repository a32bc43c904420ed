import Foundation

/// AKS workload identity: the projected service-account token in `AZURE_FEDERATED_TOKEN_FILE` is
/// exchanged at Entra ID for an access token (OAuth 2.0 client credentials with a JWT
/// `client_assertion`). The file is read on every exchange because the kubelet rotates it.
struct WorkloadIdentityExchange: Sendable {
    let tokenFile: String
    let clientID: String
    let tenantID: String
    let authorityHost: String

    static let assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    var tokenURL: String { "\(authorityHost)/\(tenantID)/oauth2/v2.0/token" }

    func token(resource: String, http: any HTTPClient, retry: AzureRetryPolicy,
               now: @Sendable () -> Date) async throws -> AccessToken {
        let assertion = try await readAssertion()
        let body = FormEncoding.encode([
            ("client_assertion", assertion.reveal()),
            ("client_assertion_type", Self.assertionType),
            ("client_id", clientID),
            ("grant_type", "client_credentials"),
            ("scope", Self.scope(for: resource)),
        ])
        let source = "Entra ID token endpoint \(tokenURL)"
        let response = try await retry.execute(http, retrying: AzureRetryPolicy.entraStatuses) {
            HTTPRequest(method: "POST", url: tokenURL,
                        headers: ["Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"],
                        body: Array(body.utf8), timeouts: .standard, maxResponseBytes: 64 << 10)
        }
        guard response.isSuccess else {
            throw TokenEndpoint.failure(response, source: source,
                                        remedy: response.status < 500 && response.status != 429
                                            ? "check the federated credential (issuer, subject) on app \(clientID) in tenant \(tenantID)"
                                            : nil)
        }
        let object = try TokenEndpoint.jsonObject(response, source: source)
        return try TokenEndpoint.accessToken(
            try TokenEndpoint.requiredString(object, "access_token", source: source), now: now(),
            expiresOn: JSONFields.number(object["expires_on"]), expiresIn: JSONFields.number(object["expires_in"]),
            refreshIn: JSONFields.number(object["refresh_in"]), source: source)
    }

    /// A v1 resource URI as a v2 scope, as azure-identity converts it.
    static func scope(for resource: String) -> String {
        resource.hasSuffix("/.default") ? resource : resource + "/.default"
    }

    private func readAssertion() async throws -> Secret {
        let path = tokenFile
        let source = "\(path) (env AZURE_FEDERATED_TOKEN_FILE)"
        let data: Data
        do {
            data = try await LocalFile.read(path)
        } catch {
            throw CloudAuthError(.io, source: source, "cannot read the federated token file",
                                 remedy: "check that the projected service account token volume is mounted")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw CloudAuthError(.invalidInput, source: source, "the federated token file is empty") }
        _ = try JWT.decode(text, source: source)
        return Secret(text)
    }
}
