import Foundation

/// One token request to a managed identity endpoint (IMDS or App Service) and the reading of its
/// answer. Pure: builds an ``HTTPRequest`` and parses an ``HTTPResponse``.
struct ManagedIdentityRequest: Sendable {
    let url: String
    let headers: HTTPHeaders
    /// For errors: which endpoint, without the query.
    let source: String
    let timeouts: HTTPTimeouts
    /// What to suggest when the endpoint says the identity does not exist.
    let identityRemedy: String

    /// IMDS, api-version 2018-02-01: `GET {endpoint}/metadata/identity/oauth2/token` with
    /// `Metadata: true`; a user-assigned identity by `client_id`, `object_id` or `msi_res_id`.
    static func imds(endpoint: String, resource: String, settings: AzureSettings) -> ManagedIdentityRequest {
        var query = [("api-version", "2018-02-01"), ("resource", resource)]
        query += userAssigned(settings, names: ("client_id", "object_id", "msi_res_id"))
        let path = "\(endpoint)/metadata/identity/oauth2/token"
        return ManagedIdentityRequest(
            url: path + "?" + FormEncoding.encode(query), headers: ["Metadata": "true"],
            source: "Azure IMDS \(path)", timeouts: .metadata,
            identityRemedy: "assign the identity to this VM, or set azure.client_id to a user-assigned identity that is")
    }

    /// App Service / Functions / Container Apps, api-version 2019-08-01: `GET {IDENTITY_ENDPOINT}`
    /// with `X-IDENTITY-HEADER`; a user-assigned identity by `client_id`, `principal_id` or `mi_res_id`.
    static func appService(endpoint: String, secret: String, resource: String,
                           settings: AzureSettings) -> ManagedIdentityRequest {
        var query = [("api-version", "2019-08-01"), ("resource", resource)]
        query += userAssigned(settings, names: ("client_id", "principal_id", "mi_res_id"))
        return ManagedIdentityRequest(
            url: endpoint + (endpoint.contains("?") ? "&" : "?") + FormEncoding.encode(query),
            headers: ["X-IDENTITY-HEADER": secret],
            source: "Azure App Service identity endpoint \(EndpointURL.stripQuery(endpoint)) (env IDENTITY_ENDPOINT)",
            timeouts: .standard,
            identityRemedy: "enable the app's identity, or set azure.client_id to a user-assigned identity attached to it")
    }

    private static func userAssigned(_ settings: AzureSettings,
                                     names: (client: String, object: String, resource: String)) -> [(String, String)] {
        if let clientID = settings.clientID { return [(names.client, clientID)] }
        if let objectID = settings.objectID { return [(names.object, objectID)] }
        if let resourceID = settings.resourceID { return [(names.resource, resourceID)] }
        return []
    }

    func httpRequest() throws -> HTTPRequest {
        HTTPRequest(url: url, headers: headers, timeouts: timeouts, maxResponseBytes: 64 << 10)
    }

    /// The token in a 2xx answer, or a precise error: an unknown identity (400) is final and says so.
    func parse(_ response: HTTPResponse, now: Date) throws -> AccessToken {
        guard response.isSuccess else {
            let detail = TokenEndpoint.describeError(response).lowercased()
            let unknownIdentity = response.status == 400 && detail.contains("identity not found")
            throw TokenEndpoint.failure(response, source: source,
                                        remedy: unknownIdentity ? "no such managed identity: \(identityRemedy)" : nil)
        }
        let object = try TokenEndpoint.jsonObject(response, source: source)
        let token = try TokenEndpoint.requiredString(object, "access_token", source: source)
        let expiresOn = JSONFields.number(object["expires_on"])
        let expiresIn = JSONFields.number(object["expires_in"])
        if object["expires_on"] != nil, expiresOn == nil {
            throw CloudAuthError(.malformedResponse, source: source, "'expires_on' is not a number of epoch seconds")
        }
        let notBefore = JSONFields.number(object["not_before"]).map { Date(timeIntervalSince1970: $0) }
        return try TokenEndpoint.accessToken(token, now: now, issuedAt: notBefore, expiresOn: expiresOn,
                                             expiresIn: expiresIn, refreshIn: JSONFields.number(object["refresh_in"]),
                                             source: source)
    }
}
