import Foundation

/// Vault auth methods credagent can log in with, named as Kong Gateway 3.14 names them.
public enum VaultAuthMethod: String, Sendable, CaseIterable {
    /// AWS IAM: a signed `sts:GetCallerIdentity` request.
    case awsIAM = "aws_iam"
    /// AWS EC2: the instance identity PKCS#7 document from IMDS and a nonce.
    case awsEC2 = "aws_ec2"
    /// Azure: a managed identity token for ARM plus the VM's instance metadata.
    case azure
    /// GCP, gce type: a metadata-server identity token for `http://vault/{role}`.
    case gcpGCE = "gcp_gce"
    /// GCP, iam type: a JWT signed by the IAM Credentials `signJwt` API.
    case gcpIAM = "gcp_iam"
    /// Generic JWT/OIDC: the provider's identity token for a configured audience.
    case jwt

    /// The auth mount Vault's documentation uses for this method.
    public var defaultMount: String {
        switch self {
        case .awsIAM, .awsEC2: return "aws"
        case .azure: return "azure"
        case .gcpGCE, .gcpIAM: return "gcp"
        case .jwt: return "jwt"
        }
    }

    /// The cloud whose identity this method proves (`nil`: any).
    public var requiredProvider: String? {
        switch self {
        case .awsIAM, .awsEC2: return "aws"
        case .azure: return "azure"
        case .gcpGCE, .gcpIAM: return "gcp"
        case .jwt: return nil
        }
    }
}

/// The cloud identity a Vault login proves.
public enum VaultIdentity: Sendable {
    case aws(AWSCredentialChain)
    case azure(AzureIdentity)
    case gcp(GCPIdentity)

    var providerName: String {
        switch self {
        case .aws: return "aws"
        case .azure: return "azure"
        case .gcp: return "gcp"
        }
    }
}

/// Builds the login payload of one auth method from a cloud identity, fresh for every login.
public final class VaultLogin: Sendable {
    public let method: VaultAuthMethod
    public let role: String
    /// AWS IAM: the value of `X-Vault-AWS-IAM-Server-ID`, when the Vault role requires one.
    public let serverID: String?
    /// jwt: the audience (GCP) or resource (Azure) of the identity token.
    public let audience: String?
    private let identity: VaultIdentity
    private let http: any HTTPClient
    private let environment: [String: String]
    /// The IAM Credentials API (gcp_iam); `https://iamcredentials.googleapis.com` unless overridden.
    private let iamCredentialsEndpoint: String
    /// aws_ec2: the client nonce Vault binds to this instance on first login; kept for re-logins.
    private let ec2Nonce = UUID().uuidString.lowercased()

    public init(method: VaultAuthMethod, role: String, serverID: String? = nil, audience: String? = nil,
                identity: VaultIdentity, http: any HTTPClient, environment: [String: String],
                iamCredentialsEndpoint: String? = nil) throws {
        if let required = method.requiredProvider, required != identity.providerName {
            throw CloudAuthError(.configuration, source: "vault method \(method.rawValue)",
                                 "the \(method.rawValue) method needs the \(required) provider, not \(identity.providerName)",
                                 remedy: "set provider: \(required), or use method: jwt")
        }
        self.method = method
        self.role = role
        self.serverID = serverID
        self.audience = audience
        self.identity = identity
        self.http = http
        self.environment = environment
        self.iamCredentialsEndpoint = iamCredentialsEndpoint
            ?? environment["GOOGLE_IAM_CREDENTIALS_ENDPOINT"] ?? "https://iamcredentials.googleapis.com"
    }

    /// The JSON body for `POST /v1/auth/{mount}/login`, built now.
    public func payload(now: Date) async throws -> [String: String] {
        switch (method, identity) {
        case (.awsIAM, .aws(let chain)):
            return try await VaultAWSLogin.payload(role: role, serverID: serverID, chain: chain, at: now)
        case (.awsEC2, .aws(let chain)):
            let document = try await chain.instanceIdentityPKCS7()
            return ["role": role, "pkcs7": document, "nonce": ec2Nonce]
        case (.azure, .azure(let azure)):
            let token = try await azure.token(resource: audience ?? AzureResource.management)
            let metadata = try await azure.instanceMetadata()
            var payload = ["role": role, "jwt": token.token.reveal(),
                           "subscription_id": metadata.subscriptionID,
                           "resource_group_name": metadata.resourceGroup,
                           "resource_id": metadata.resourceID]
            if let scaleSet = metadata.vmScaleSetName, !scaleSet.isEmpty {
                payload["vmss_name"] = scaleSet
            } else {
                payload["vm_name"] = metadata.vmName
            }
            return payload
        case (.gcpGCE, .gcp(let gcp)):
            let token = try await gcp.identityToken(audience: "http://vault/\(role)")
            return ["role": role, "jwt": token.token.reveal()]
        case (.gcpIAM, .gcp(let gcp)):
            return ["role": role, "jwt": try await signedIAMJWT(gcp: gcp, now: now).reveal()]
        case (.jwt, _):
            return ["role": role, "jwt": try await identityToken().reveal()]
        default:
            throw CloudAuthError(.configuration, source: "vault method \(method.rawValue)",
                                 "the \(method.rawValue) method cannot use the \(identity.providerName) provider")
        }
    }

    /// The provider's identity token for the jwt method.
    private func identityToken() async throws -> Secret {
        switch identity {
        case .azure(let azure):
            return try await azure.token(resource: audience ?? AzureResource.management).token
        case .gcp(let gcp):
            return try await gcp.identityToken(audience: audience ?? "vault/\(role)").token
        case .aws:
            // On EKS the projected service account token is the pod's OIDC identity.
            guard let path = environment["AWS_WEB_IDENTITY_TOKEN_FILE"], !path.isEmpty else {
                throw CloudAuthError(.configuration, source: "vault method jwt with provider aws",
                                     "AWS_WEB_IDENTITY_TOKEN_FILE is not set, so there is no identity token to present",
                                     remedy: "run with an IRSA/projected service account token, or use method: aws_iam")
            }
            do {
                return Secret(try await LocalFile.readTrimmedText(path))
            } catch {
                throw CloudAuthError(.io, source: "AWS_WEB_IDENTITY_TOKEN_FILE \(path)", "the token file cannot be read")
            }
        }
    }

    /// A JWT for `vault/{role}` signed by the service account through the IAM Credentials API,
    /// valid for less than the 15 minutes Vault's gcp iam login accepts.
    private func signedIAMJWT(gcp: GCPIdentity, now: Date) async throws -> Secret {
        let email = try await gcp.email()
        let access = try await gcp.accessToken(scopes: [GCPIdentity.cloudPlatformScope])
        let claims: [String: Any] = ["aud": "vault/\(role)", "sub": email,
                                     "exp": Int(now.timeIntervalSince1970) + 600]
        let claimText = String(decoding: try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]), as: UTF8.self)
        let body = try JSONSerialization.data(withJSONObject: ["payload": claimText])
        let base = iamCredentialsEndpoint.hasSuffix("/") ? String(iamCredentialsEndpoint.dropLast()) : iamCredentialsEndpoint
        let url = "\(base)/v1/projects/-/serviceAccounts/\(GCPIdentity.pathComponent(account: email)):signJwt"
        let response = try await http.execute(HTTPRequest(
            method: "POST", url: url,
            headers: ["Authorization": "Bearer \(access.token.reveal())", "Content-Type": "application/json"],
            body: Array(body)))
        let source = "IAM Credentials signJwt \((try? EndpointURL(parsing: url).redacted) ?? url)"
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
        guard response.isSuccess else {
            let detail = ((json?["error"] as? [String: Any])?["message"] as? String).map { ": \($0)" } ?? ""
            throw CloudAuthError(response.status >= 500 ? .unavailable : .rejected, source: source,
                                 "HTTP \(response.status)\(detail)",
                                 remedy: "the service account needs roles/iam.serviceAccountTokenCreator on itself")
        }
        guard let signed = json?["signedJwt"] as? String, !signed.isEmpty else {
            throw CloudAuthError(.malformedResponse, source: source, "the answer has no signedJwt")
        }
        return Secret(signed)
    }
}
