import CloudAuth
import Foundation

/// The Azure listener: IMDS, the App Service identity endpoint, Entra ID's token endpoint, the
/// Azure issuer's discovery documents, with the wire formats Microsoft documents, and the
/// discovery documents of the Kubernetes issuer whose projected tokens workload identity exchanges.
extension CloudEmulator {
    func routeAzure(_ request: EmulatorRequest) -> EmulatorResponse {
        let tenantPrefix = "/azure/\(configuration.tenantID)"
        switch (request.method, request.path) {
        case ("GET", "/metadata/identity/oauth2/token"):
            return respond(.azureIMDSToken) { imdsToken(request, expired: $0) }
        case ("GET", "/metadata/instance"):
            return respond(.azureInstanceMetadata) { _ in instanceMetadata(request) }
        case ("GET", "/msi/token"):
            return respond(.azureAppServiceToken) { appServiceToken(request, expired: $0) }
        case ("POST", "\(tenantPrefix)/oauth2/v2.0/token"):
            return respond(.azureEntraToken) { entraToken(request, expired: $0) }
        case ("GET", "\(tenantPrefix)/v2.0/.well-known/openid-configuration"):
            return respond(.azureDiscovery) { _ in
                discoveryDocument(issuer: azureIssuer, jwksURI: "\(azureBaseURL)\(tenantPrefix)/discovery/v2.0/keys",
                                  tokenEndpoint: "\(azureBaseURL)\(tenantPrefix)/oauth2/v2.0/token")
            }
        case ("GET", "\(tenantPrefix)/discovery/v2.0/keys"):
            return respond(.azureDiscovery) { _ in jwks() }
        case ("GET", "/kubernetes/.well-known/openid-configuration"):
            // The cluster's service-account issuer, as AKS and EKS publish it for federation.
            return respond(.azureDiscovery) { _ in
                discoveryDocument(issuer: kubernetesIssuer, jwksURI: "\(kubernetesIssuer)/openid/v1/jwks",
                                  tokenEndpoint: "\(kubernetesIssuer)/token")
            }
        case ("GET", "/kubernetes/openid/v1/jwks"):
            return respond(.azureDiscovery) { _ in jwks() }
        default:
            return .json(404, ["error": "not_found", "error_description": "No route for \(request.method) \(request.path) on the Azure emulator."])
        }
    }

    private static func oauthError(_ status: Int, _ error: String, _ description: String) -> EmulatorResponse {
        .json(status, ["error": error, "error_description": description])
    }

    /// The managed identity a request names by any of the given parameters, or the system identity.
    private func managedIdentity(_ request: EmulatorRequest,
                                 parameters: (client: String, object: String, resource: String)) -> AzureManagedIdentity? {
        let all = [configuration.systemIdentity] + configuration.userIdentities
        if let clientID = request.parameter(parameters.client) { return all.first { $0.clientID.lowercased() == clientID.lowercased() } }
        if let objectID = request.parameter(parameters.object) { return all.first { $0.objectID.lowercased() == objectID.lowercased() } }
        if let resourceID = request.parameter(parameters.resource) { return all.first { $0.resourceID.lowercased() == resourceID.lowercased() } }
        return configuration.systemIdentity
    }

    private func imdsToken(_ request: EmulatorRequest, expired: Bool) -> EmulatorResponse {
        guard request.headers["metadata"] == "true" else {
            return Self.oauthError(400, "invalid_request", "Required metadata header not specified")
        }
        guard request.parameter("api-version") != nil else {
            return Self.oauthError(400, "invalid_request", "Required query variable 'api-version' is missing")
        }
        guard let resource = request.parameter("resource"), !resource.isEmpty else {
            return Self.oauthError(400, "invalid_request", "Required audience parameter not specified")
        }
        guard let identity = managedIdentity(request, parameters: ("client_id", "object_id", "msi_res_id")) else {
            return Self.oauthError(400, "invalid_request", "Identity not found")
        }
        let validity = validity(expired: expired)
        let token = azureAccessToken(resource: resource, clientID: identity.clientID, objectID: identity.objectID,
                                     managedIdentityResource: identity.resourceID, validity: validity)
        var body: [String: any Sendable] = [
            "access_token": token, "client_id": identity.clientID, "expires_in": String(validity.expiresAt - Int(Date().timeIntervalSince1970)),
            "expires_on": String(validity.expiresAt), "ext_expires_in": String(validity.lifetime),
            "not_before": String(validity.issuedAt), "resource": resource, "token_type": "Bearer",
        ]
        // IMDS adds refresh_in for tokens that live two hours or more: half their lifetime.
        if validity.lifetime >= 7200 { body["refresh_in"] = String(validity.lifetime / 2) }
        return .json(200, body)
    }

    private func instanceMetadata(_ request: EmulatorRequest) -> EmulatorResponse {
        guard request.headers["metadata"] == "true" else {
            return .json(400, ["error": "Bad request. Required metadata header not specified"])
        }
        let vmID = "02aab8a4-74ef-476e-8182-f6d2ba4166a6"
        return .json(200, [
            "compute": [
                "azEnvironment": "AzurePublicCloud", "location": configuration.location, "name": configuration.vmName,
                "osType": "Linux", "provider": "Microsoft.Compute", "resourceGroupName": configuration.resourceGroup,
                "resourceId": configuration.systemIdentity.resourceID, "subscriptionId": configuration.subscriptionID,
                "vmId": vmID, "vmScaleSetName": configuration.vmScaleSetName ?? "", "vmSize": "Standard_D2s_v5",
                "zone": "1", "tagsList": [] as [any Sendable],
            ] as [String: any Sendable],
            "network": ["interface": [] as [any Sendable]] as [String: any Sendable],
        ])
    }

    private func appServiceToken(_ request: EmulatorRequest, expired: Bool) -> EmulatorResponse {
        let secret = Array((request.headers["x-identity-header"] ?? "").utf8)
        guard Digest.constantTimeEquals(secret, Array(configuration.appServiceSecret.reveal().utf8)) else {
            return .json(401, ["statusCode": 401, "message": "Unauthorized: the X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER."])
        }
        guard request.parameter("api-version") == "2019-08-01" else {
            return Self.oauthError(400, "invalid_request", "api-version 2019-08-01 is required")
        }
        guard let resource = request.parameter("resource"), !resource.isEmpty else {
            return Self.oauthError(400, "invalid_request", "Required query parameter 'resource' is missing")
        }
        guard let identity = managedIdentity(request, parameters: ("client_id", "principal_id", "mi_res_id")) else {
            return Self.oauthError(400, "invalid_request", "Identity not found")
        }
        let validity = validity(expired: expired)
        let token = azureAccessToken(resource: resource, clientID: identity.clientID, objectID: identity.objectID,
                                     managedIdentityResource: identity.resourceID, validity: validity)
        return .json(200, [
            "access_token": token, "expires_on": String(validity.expiresAt), "resource": resource,
            "token_type": "Bearer", "client_id": identity.clientID,
        ])
    }

    /// Entra ID's v2 token endpoint for the client-credentials grant with a federated assertion:
    /// the assertion must be an RS256 JWT signed by the emulator's Kubernetes issuer for the
    /// configured subject, audience `api://AzureADTokenExchange`, and not expired.
    private func entraToken(_ request: EmulatorRequest, expired: Bool) -> EmulatorResponse {
        let form = Dictionary(request.form.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        func aadError(_ status: Int, _ error: String, _ code: Int, _ text: String) -> EmulatorResponse {
            .json(status, [
                "error": error, "error_description": "AADSTS\(code): \(text)", "error_codes": [code],
                "timestamp": Date().formatted(.iso8601), "trace_id": UUID().uuidString.lowercased(),
                "correlation_id": UUID().uuidString.lowercased(),
            ])
        }
        for name in ["grant_type", "client_id", "scope", "client_assertion_type", "client_assertion"] where form[name] == nil {
            return aadError(400, "invalid_request", 900144, "The request body must contain the following parameter: '\(name)'.")
        }
        guard form["grant_type"] == "client_credentials" else {
            return aadError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '\(form["grant_type"] ?? "")'.")
        }
        guard form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" else {
            return aadError(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        }
        guard form["client_id"] == configuration.workloadClientID else {
            return aadError(400, "unauthorized_client", 700016,
                            "Application with identifier '\(form["client_id"] ?? "")' was not found in the directory '\(configuration.tenantID)'.")
        }
        guard let scope = form["scope"], scope.hasSuffix("/.default") else {
            return aadError(400, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
        }
        guard let assertion = try? JWT.decode(form["client_assertion"] ?? "", source: "client_assertion") else {
            return aadError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        }
        guard assertion.hasValidSignature(key: signingKey) else {
            return aadError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        }
        let now = Date()
        guard let expiry = assertion.date("exp"), expiry > now else {
            return aadError(400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        }
        guard assertion.audiences.contains("api://AzureADTokenExchange") else {
            return aadError(400, "invalid_client", 700212,
                            "No matching federated identity record found for presented assertion audience '\(assertion.audiences.joined(separator: ","))'.")
        }
        guard assertion.string("iss") == kubernetesIssuer, assertion.string("sub") == configuration.workloadSubject else {
            return aadError(400, "invalid_client", 70021,
                            "No matching federated identity record found for presented assertion. Assertion Issuer: '\(assertion.string("iss") ?? "")'. Assertion Subject: '\(assertion.string("sub") ?? "")'.")
        }
        let validity = validity(expired: expired)
        let resource = String(scope.dropLast("/.default".count))
        let token = azureAccessToken(resource: resource, clientID: configuration.workloadClientID,
                                     objectID: configuration.workloadObjectID, managedIdentityResource: nil, validity: validity)
        return .json(200, [
            "token_type": "Bearer", "expires_in": validity.expiresAt - Int(now.timeIntervalSince1970),
            "ext_expires_in": validity.lifetime, "access_token": token,
        ])
    }
}
