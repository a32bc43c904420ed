import CloudAuth
import Foundation
import Synchronization

/// Local AWS, Azure and GCP identity endpoints over real HTTP, for development, tests and demos.
///
/// Three loopback listeners: the AWS one serves EC2 IMDSv2, the ECS/EKS container credentials
/// endpoint and STS at `/` (verifying the SigV4 signatures of the keys it issued); the Azure one
/// serves IMDS (tokens, instance metadata), the App Service identity endpoint, Entra ID's token
/// endpoint for workload identity and an OIDC issuer under `/azure/{tenant}/v2.0`, plus the
/// Kubernetes issuer of projected service-account tokens under `/kubernetes`; the GCP one serves the
/// metadata server, Google's OAuth token endpoint for service-account keys and an OIDC issuer under
/// `/gcp`. Tokens are RS256 JWTs (GCP access tokens are opaque, as Google's are) from a key made at
/// start or loaded, with a lifetime that can be changed at runtime. Every listener also serves
/// `/emulator/` (see `ControlRoutes.swift`): token verification, failure injection, request counts.
///
/// ```swift
/// let emulator = try await CloudEmulator.start()
/// let env = emulator.environment(for: .azureIMDS)   // IMDS_ENDPOINT=http://127.0.0.1:PORT
/// ... // what needs the endpoints
/// try await emulator.stop()
/// ```
public final class CloudEmulator: Sendable {
    /// A managed identity the Azure side knows.
    public struct AzureManagedIdentity: Sendable, Equatable {
        public var clientID: String
        public var objectID: String
        /// ARM resource id: the VM's for the system-assigned identity, the identity's own otherwise.
        public var resourceID: String
        public init(clientID: String, objectID: String, resourceID: String) {
            self.clientID = clientID
            self.objectID = objectID
            self.resourceID = resourceID
        }
    }

    /// What the emulated clouds look like. The defaults describe one VM with a system-assigned and
    /// a user-assigned identity, one workload-identity app, and one GCE instance with one service
    /// account.
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        /// 0: an ephemeral port.
        public var awsPort = 0
        public var azurePort = 0
        public var gcpPort = 0
        /// Lifetime of issued tokens, in seconds; can be changed later with ``tokenLifetime``.
        public var tokenLifetime: TimeInterval = 3600

        public var tenantID = "5b0a6f4e-1c2d-4e3f-9a8b-7c6d5e4f3a2b"
        public var subscriptionID = "6c1f9a2e-8d3b-4f5a-9e7c-1b2d3f4a5c6e"
        public var resourceGroup = "credagent-rg"
        public var vmName = "credagent-vm"
        /// Set to emulate a scale-set instance.
        public var vmScaleSetName: String?
        public var location = "westeurope"
        /// The VM's system-assigned identity (used when a request names none).
        public var systemIdentity: AzureManagedIdentity
        /// User-assigned identities attached to the VM and the app.
        public var userIdentities: [AzureManagedIdentity]
        /// The App Service `IDENTITY_HEADER` secret.
        public var appServiceSecret = Secret(Encoding.hex(Digest.randomBytes(16)))
        /// The app registration that workload identity exchanges tokens for.
        public var workloadClientID = "0f9e8d7c-6b5a-4948-8776-655443322110"
        public var workloadObjectID = "7d6c5b4a-3928-4716-a5b4-c3d2e1f00112"
        /// The federated credential's subject: the Kubernetes service account.
        public var workloadSubject = "system:serviceaccount:default:credagent"

        public var gcpProjectID = "credagent-emulator"
        public var gcpProjectNumber = "123456789012"
        public var gcpServiceAccountEmail = "credagent@credagent-emulator.iam.gserviceaccount.com"
        /// The service account's numeric unique id (`sub`/`azp` of its identity tokens).
        public var gcpServiceAccountID = "104857600000000000001"
        public var gcpZone = "europe-west1-b"
        public var gcpInstanceName = "credagent-vm"
        public var gcpInstanceID = "4242424242424242424"

        public var awsRegion = "us-east-1"
        /// The instance profile's role, as IMDS lists it.
        public var awsRoleName = "credagent-instance-role"
        public var awsAccountID = "123456789012"
        /// The `Authorization` value the container credentials endpoint requires.
        public var awsContainerAuthorization = Secret(Encoding.hex(Digest.randomBytes(16)))
        /// The role a pod assumes with its web identity token (IRSA).
        public var awsWebIdentityRoleName = "credagent-pod-role"

        /// Where the emulator keeps its signing keys across restarts (created 0700, keys 0600) and
        /// writes the files clients read: the GCP key file, the Azure federated token and the AWS web
        /// identity token. Nil: keys live in memory only and no files are written.
        public var stateDirectory: String?

        /// How far the emulator's clock is ahead of this machine's (seconds; negative: behind), as
        /// the `Date` header of every answer shows it; issued tokens keep this machine's times. For
        /// testing clock-skew reports.
        public var dateHeaderOffset: TimeInterval = 0

        public init() {
            let vm = "/subscriptions/\(subscriptionID)/resourceGroups/\(resourceGroup)/providers/Microsoft.Compute/virtualMachines/\(vmName)"
            systemIdentity = AzureManagedIdentity(clientID: "a1b2c3d4-e5f6-4789-8abc-def012345678",
                                                  objectID: "b2c3d4e5-f6a7-4890-9bcd-ef0123456789", resourceID: vm)
            userIdentities = [AzureManagedIdentity(
                clientID: "c3d4e5f6-a7b8-4901-8cde-f01234567890", objectID: "d4e5f6a7-b8c9-4012-9def-012345678901",
                resourceID: "/subscriptions/\(subscriptionID)/resourceGroups/\(resourceGroup)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/credagent-uami")]
        }
    }

    /// Where clients are pointed.
    public enum Client: Sendable {
        /// Azure VM: `IMDS_ENDPOINT`.
        case azureIMDS
        /// App Service / Functions / Container Apps: `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`.
        case azureAppService
        /// AKS workload identity: `AZURE_AUTHORITY_HOST`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
        /// `AZURE_FEDERATED_TOKEN_FILE` (the file is written by ``writeFederatedToken(to:)``).
        case azureWorkloadIdentity(tokenFile: String)
        /// GCE/GKE: `GCE_METADATA_HOST`.
        case gcpMetadata
        /// Key file: `GOOGLE_APPLICATION_CREDENTIALS` (written by ``writeServiceAccountKey(to:)``).
        case gcpKeyFile(path: String)
        /// EC2: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, `AWS_REGION`.
        case awsIMDS
        /// ECS / EKS Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
        case awsContainer
        /// EKS IAM roles for service accounts: `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`,
        /// `AWS_ROLE_SESSION_NAME`, `AWS_ENDPOINT_URL_STS` (the file is written by ``writeWebIdentityToken(to:)``).
        case awsWebIdentity(tokenFile: String)
    }

    public let configuration: Configuration
    /// Signs every token the emulator issues; its public half is in both issuers' JWKS.
    let signingKey: RSAKey
    let signingKeyID: String
    /// The service account's key, handed out by ``serviceAccountKeyJSON()``.
    let serviceAccountKey: RSAKey
    let serviceAccountKeyID: String
    let state: Mutex<EmulatorState>
    private let listeners = Mutex<[Cloud: EmulatorHTTPServer]>([:])

    /// The clouds the emulator has a listener for.
    enum Cloud: CaseIterable {
        case aws, azure, gcp
    }

    /// Generates the keys, or loads them from the state directory; ``start()`` opens the listeners.
    public init(configuration: Configuration = Configuration()) throws {
        self.configuration = configuration
        signingKey = try Self.stateKey("signing-key.pem", in: configuration.stateDirectory)
        serviceAccountKey = try Self.stateKey("gcp-service-account-key.pem", in: configuration.stateDirectory)
        signingKeyID = Encoding.hex(Digest.sha256(signingKey.publicComponents().modulus).prefix(10))
        serviceAccountKeyID = Encoding.hex(Digest.sha256(serviceAccountKey.publicComponents().modulus).prefix(20))
        state = Mutex(EmulatorState(tokenLifetime: max(1, configuration.tokenLifetime)))
    }

    /// Creates and starts an emulator.
    public static func start(_ configuration: Configuration = Configuration()) async throws -> CloudEmulator {
        let emulator = try CloudEmulator(configuration: configuration)
        try await emulator.start()
        return emulator
    }

    /// Opens the three listeners.
    public func start() async throws {
        var opened: [Cloud: EmulatorHTTPServer] = [:]
        do {
            for cloud in Cloud.allCases {
                let port = switch cloud {
                case .aws: configuration.awsPort
                case .azure: configuration.azurePort
                case .gcp: configuration.gcpPort
                }
                opened[cloud] = try await EmulatorHTTPServer.start(host: configuration.host, port: port) { [weak self] request in
                    guard let self else { return .text(503, "emulator stopped") }
                    // Every answer is dated, as the clouds' endpoints date theirs.
                    var response = self.route(request, for: cloud)
                    response.headers.replace("Date", HTTPDate.format(Date() + self.configuration.dateHeaderOffset))
                    return response
                }
            }
        } catch {
            for server in opened.values { try? await server.stop() }
            throw error
        }
        listeners.withLock { $0 = opened }
        if configuration.stateDirectory != nil { try writeClientFiles() }
    }

    /// The key `name` in `directory`, made and saved there the first time; a fresh key without a directory.
    private static func stateKey(_ name: String, in directory: String?) throws -> RSAKey {
        guard let directory else { return try RSAKey.generate() }
        let path = directory + "/" + name
        if FileManager.default.fileExists(atPath: path) {
            return try RSAKey(pem: String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self), source: path)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let key = try RSAKey.generate()
        try writePrivate(key.pemPKCS8().reveal(), to: path)
        return key
    }

    /// The client files in the state directory (nil without one).
    public var serviceAccountKeyFile: String? { configuration.stateDirectory.map { $0 + "/gcp-service-account.json" } }
    public var azureFederatedTokenFile: String? { configuration.stateDirectory.map { $0 + "/azure-federated-token" } }
    public var awsWebIdentityTokenFile: String? { configuration.stateDirectory.map { $0 + "/aws-web-identity-token" } }

    /// Writes (or rewrites, as the kubelet rotates projected tokens) the client files in the state directory.
    public func writeClientFiles() throws {
        if let path = serviceAccountKeyFile { try writeServiceAccountKey(to: path) }
        if let path = azureFederatedTokenFile { try writeFederatedToken(to: path) }
        if let path = awsWebIdentityTokenFile { try writeWebIdentityToken(to: path) }
    }

    private func route(_ request: EmulatorRequest, for cloud: Cloud) -> EmulatorResponse {
        if request.path.hasPrefix("/emulator/") { return routeControl(request) }
        return switch cloud {
        case .aws: routeAWS(request)
        case .azure: routeAzure(request)
        case .gcp: routeGCP(request)
        }
    }

    /// Closes the listeners.
    public func stop() async throws {
        let servers = listeners.withLock { current in
            defer { current = [:] }
            return current
        }
        for server in servers.values { try await server.stop() }
    }

    private var hostForURL: String {
        configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
    }

    /// The AWS listener's port (0 before start).
    public var awsPort: Int { listeners.withLock { $0[.aws]?.port ?? 0 } }
    /// The Azure listener's port (0 before start).
    public var azurePort: Int { listeners.withLock { $0[.azure]?.port ?? 0 } }
    /// The GCP listener's port (0 before start).
    public var gcpPort: Int { listeners.withLock { $0[.gcp]?.port ?? 0 } }

    /// `http://host:port` of the AWS listener: IMDS's base URL.
    public var awsBaseURL: String { "http://\(hostForURL):\(awsPort)" }

    /// `http://host:port` of the Azure listener: IMDS's base URL.
    public var azureBaseURL: String { "http://\(hostForURL):\(azurePort)" }
    /// `http://host:port` of the GCP listener.
    public var gcpBaseURL: String { "http://\(hostForURL):\(gcpPort)" }
    /// host:port, as `GCE_METADATA_HOST` takes it.
    public var gcpMetadataHost: String { "\(hostForURL):\(gcpPort)" }
    /// The App Service identity endpoint (`IDENTITY_ENDPOINT`).
    public var appServiceEndpoint: String { "\(azureBaseURL)/msi/token" }
    /// Entra ID's authority host (`AZURE_AUTHORITY_HOST`).
    public var azureAuthorityHost: String { "\(azureBaseURL)/azure" }
    /// The issuer of Azure tokens; its discovery document is at `{issuer}/.well-known/openid-configuration`.
    public var azureIssuer: String { "\(azureAuthorityHost)/\(configuration.tenantID)/v2.0" }
    /// The issuer of the Kubernetes service-account tokens that workload identity exchanges.
    public var kubernetesIssuer: String { "\(azureBaseURL)/kubernetes" }
    /// The issuer of GCP identity tokens.
    public var gcpIssuer: String { "\(gcpBaseURL)/gcp" }
    /// Google's OAuth token endpoint (the key file's `token_uri`).
    public var gcpTokenURI: String { "\(gcpIssuer)/token" }

    /// The environment variables that point `client` at this emulator.
    public func environment(for client: Client) -> [String: String] {
        switch client {
        case .azureIMDS:
            return ["IMDS_ENDPOINT": azureBaseURL]
        case .azureAppService:
            return ["IDENTITY_ENDPOINT": appServiceEndpoint, "IDENTITY_HEADER": configuration.appServiceSecret.reveal()]
        case let .azureWorkloadIdentity(tokenFile):
            return ["AZURE_AUTHORITY_HOST": azureAuthorityHost, "AZURE_TENANT_ID": configuration.tenantID,
                    "AZURE_CLIENT_ID": configuration.workloadClientID, "AZURE_FEDERATED_TOKEN_FILE": tokenFile]
        case .gcpMetadata:
            return ["GCE_METADATA_HOST": gcpMetadataHost]
        case let .gcpKeyFile(path):
            return ["GOOGLE_APPLICATION_CREDENTIALS": path]
        case .awsIMDS:
            return ["AWS_EC2_METADATA_SERVICE_ENDPOINT": awsBaseURL, "AWS_ENDPOINT_URL_STS": awsBaseURL,
                    "AWS_REGION": configuration.awsRegion, "AWS_DEFAULT_REGION": configuration.awsRegion]
        case .awsContainer:
            return ["AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(awsBaseURL)\(Self.containerCredentialsPath)",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN": configuration.awsContainerAuthorization.reveal(),
                    "AWS_ENDPOINT_URL_STS": awsBaseURL, "AWS_REGION": configuration.awsRegion, "AWS_DEFAULT_REGION": configuration.awsRegion]
        case let .awsWebIdentity(tokenFile):
            return ["AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": roleARN(configuration.awsWebIdentityRoleName),
                    "AWS_ROLE_SESSION_NAME": "credagent", "AWS_ENDPOINT_URL_STS": awsBaseURL,
                    "AWS_REGION": configuration.awsRegion, "AWS_DEFAULT_REGION": configuration.awsRegion]
        }
    }

    /// A service-account key file (JSON) for the emulated service account, whose `token_uri` is
    /// this emulator's token endpoint.
    public func serviceAccountKeyJSON() -> Secret {
        let object: [String: any Sendable] = [
            "type": "service_account",
            "project_id": configuration.gcpProjectID,
            "private_key_id": serviceAccountKeyID,
            "private_key": serviceAccountKey.pemPKCS8().reveal(),
            "client_email": configuration.gcpServiceAccountEmail,
            "client_id": configuration.gcpServiceAccountID,
            "auth_uri": "\(gcpIssuer)/auth",
            "token_uri": gcpTokenURI,
            "auth_provider_x509_cert_url": "\(gcpIssuer)/oauth2/v1/certs",
            "client_x509_cert_url": "\(gcpIssuer)/robot/v1/metadata/x509/\(configuration.gcpServiceAccountEmail)",
            "universe_domain": "googleapis.com",
        ]
        return Secret(String(decoding: (try? JWT.jsonBytes(object)) ?? [], as: UTF8.self))
    }

    /// Writes ``serviceAccountKeyJSON()`` to `path`, readable by the owner only.
    public func writeServiceAccountKey(to path: String) throws {
        try Self.writePrivate(serviceAccountKeyJSON().reveal(), to: path)
    }

    /// A Kubernetes service-account token as the kubelet projects it for workload identity
    /// (`aud: api://AzureADTokenExchange`), signed by the emulator and trusted by its Entra endpoint.
    public func federatedToken(subject: String? = nil, lifetime: TimeInterval = 3600) throws -> String {
        try serviceAccountToken(audience: "api://AzureADTokenExchange", subject: subject, lifetime: lifetime)
    }

    /// Writes a fresh ``federatedToken(subject:lifetime:)`` to `path` (as the kubelet rotates it).
    public func writeFederatedToken(to path: String, subject: String? = nil) throws {
        try Self.writePrivate(try federatedToken(subject: subject), to: path)
    }

    /// A Kubernetes service-account token as EKS projects it for IAM roles for service accounts
    /// (`aud: sts.amazonaws.com`), accepted by the emulator's `AssumeRoleWithWebIdentity`.
    public func webIdentityToken(lifetime: TimeInterval = 3600) throws -> String {
        try serviceAccountToken(audience: Self.webIdentityAudience, subject: nil, lifetime: lifetime)
    }

    /// Writes a fresh ``webIdentityToken(lifetime:)`` to `path`.
    public func writeWebIdentityToken(to path: String) throws {
        try Self.writePrivate(try webIdentityToken(), to: path)
    }

    private func serviceAccountToken(audience: String, subject: String?, lifetime: TimeInterval) throws -> String {
        let now = Int(Date().timeIntervalSince1970)
        return try JWT.sign(claims: [
            "aud": [audience], "iss": kubernetesIssuer, "sub": subject ?? configuration.workloadSubject,
            "iat": now, "nbf": now, "exp": now + Int(lifetime),
            "kubernetes.io": [
                "namespace": "default",
                "serviceaccount": ["name": "credagent", "uid": UUID().uuidString.lowercased()],
            ] as [String: any Sendable],
        ], key: signingKey, keyID: signingKeyID)
    }

    private static func writePrivate(_ text: String, to path: String) throws {
        let temporary = path + ".tmp-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw CloudAuthError(.io, source: path, "cannot write the file")
        }
        guard rename(temporary, path) == 0 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw CloudAuthError(.io, source: path, "cannot replace the file (errno \(errno))")
        }
    }
}
