import CloudAuth
import CloudEmulator
import Foundation
import Testing
import TestSupport

/// Vault logins with cloud identities, verified for real: OpenBao's jwt auth checks the
/// emulator-issued tokens against the emulator's JWKS, with bound audiences and claims.
@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultLoginTests {
    let admin = BaoAdmin.fromEnvironment()!
    let http = CurlHTTPClient()

    func vault() -> VaultClient { VaultClient(endpoint: VaultEndpoint(address: admin.address), http: http) }

    @Test func jwtWithAzureManagedIdentity() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let audience = "api://vault-gateway"
            let mount = try await admin.mountJWT(
                jwksURL: "\(emulator.azureAuthorityHost)/\(emulator.configuration.tenantID)/discovery/v2.0/keys",
                issuer: emulator.azureIssuer, audience: audience, userClaim: "oid")
            let identity = AzureIdentity(settings: AzureSettings(), http: http, environment: emulator.environment(for: .azureIMDS))
            let login = try VaultLogin(method: .jwt, role: "gateway", audience: audience, identity: .azure(identity),
                                       http: http, environment: [:])
            let token = try await vault().login(mount: mount, payload: try await login.payload(now: Date()))
            #expect(token.leaseDuration == 20)
            #expect(token.renewable)
            let info = try await vault().lookupSelf(token.clientToken)
            #expect(info.policies.contains("default"))
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func jwtWithGCPIdentityToken() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, audience: "vault/gateway")
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata))
            let login = try VaultLogin(method: .jwt, role: "gateway", identity: .gcp(identity), http: http, environment: [:])
            let token = try await vault().login(mount: mount, payload: try await login.payload(now: Date()))
            #expect(token.leaseDuration == 20)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    /// The gce method's identity token (audience `http://vault/{role}`, format=full) is accepted
    /// by a verifier bound to exactly that audience.
    @Test func gcpGCEIdentityTokenHasTheAudienceVaultExpects() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, audience: "http://vault/gateway")
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata))
            let login = try VaultLogin(method: .gcpGCE, role: "gateway", identity: .gcp(identity), http: http, environment: [:])
            let payload = try await login.payload(now: Date())
            #expect(Set(payload.keys) == ["role", "jwt"])
            let decoded = try JWT.decode(payload["jwt"] ?? "", source: "gce payload")
            #expect(decoded.audiences == ["http://vault/gateway"])
            #expect((decoded.claims["google"] as? [String: any Sendable])?["compute_engine"] != nil)
            let token = try await vault().login(mount: mount, payload: payload)
            #expect(token.leaseDuration == 20)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    /// The iam method's JWT is signed by the service account through IAM Credentials `signJwt`,
    /// for audience `vault/{role}` with the account as subject, and verifies against the
    /// account's published keys.
    @Test func gcpIAMSignedJWTVerifiesAgainstTheServiceAccountKeys() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let email = emulator.configuration.gcpServiceAccountEmail
            let mount = try await admin.mountJWT(jwksURL: "\(emulator.gcpIssuer)/service_accounts/v1/jwk/\(email)", issuer: nil,
                                           audience: "vault/gateway", userClaim: "sub")
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata))
            let login = try VaultLogin(method: .gcpIAM, role: "gateway", identity: .gcp(identity), http: http,
                                       environment: ["GOOGLE_IAM_CREDENTIALS_ENDPOINT": emulator.gcpBaseURL])
            let now = Date()
            let payload = try await login.payload(now: now)
            #expect(Set(payload.keys) == ["role", "jwt"])
            let decoded = try JWT.decode(payload["jwt"] ?? "", source: "gcp_iam payload")
            #expect(decoded.string("sub") == email)
            #expect(decoded.audiences == ["vault/gateway"])
            let expiry = try #require(decoded.date("exp"))
            #expect(expiry.timeIntervalSince(now) <= 900, "Vault's gcp iam login refuses JWTs valid for 15 minutes or more")
            let token = try await vault().login(mount: mount, payload: payload)
            #expect(token.leaseDuration == 20)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    /// The azure method sends the documented fields; its jwt is one a verifier of the Azure
    /// issuer accepts for ARM.
    @Test func azureMethodPayloadShape() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let identity = AzureIdentity(settings: AzureSettings(), http: http, environment: emulator.environment(for: .azureIMDS))
            let login = try VaultLogin(method: .azure, role: "gateway", identity: .azure(identity), http: http, environment: [:])
            let payload = try await login.payload(now: Date())
            #expect(Set(payload.keys) == ["role", "jwt", "subscription_id", "resource_group_name", "vm_name", "resource_id"])
            #expect(payload["subscription_id"] == emulator.configuration.subscriptionID)
            #expect(payload["resource_group_name"] == emulator.configuration.resourceGroup)
            #expect(payload["vm_name"] == emulator.configuration.vmName)
            #expect(payload["resource_id"]?.hasPrefix("/subscriptions/\(emulator.configuration.subscriptionID)/") == true)

            let mount = try await admin.mountJWT(
                jwksURL: "\(emulator.azureAuthorityHost)/\(emulator.configuration.tenantID)/discovery/v2.0/keys",
                issuer: emulator.azureIssuer, audience: AzureResource.management, userClaim: "oid")
            let token = try await vault().login(mount: mount, payload: ["role": "gateway", "jwt": payload["jwt"] ?? ""])
            #expect(token.leaseDuration == 20)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func wrongAudienceIsRejectedWithVaultsError() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, audience: "vault/gateway")
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata))
            let login = try VaultLogin(method: .jwt, role: "gateway", audience: "someone-else", identity: .gcp(identity),
                                       http: http, environment: [:])
            let payload = try await login.payload(now: Date())
            let error = await #expect(throws: CloudAuthError.self) { try await vault().login(mount: mount, payload: payload) }
            #expect(error?.code == .rejected)
            #expect(error?.description.contains("aud") == true)
            #expect(error?.description.contains(payload["jwt"] ?? "-") == false)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    /// With a namespace the login goes to the auth mount inside it (`X-Vault-Namespace`).
    @Test func loginInsideANamespace() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let namespace = "team-\(UUID().uuidString.prefix(8).lowercased())"
            try await admin.call("POST", "sys/namespaces/\(namespace)")
            try await admin.call("POST", "sys/auth/jwt", ["type": "jwt"], namespace: namespace)
            try await admin.call("POST", "auth/jwt/config", ["jwks_url": "\(emulator.gcpIssuer)/oauth2/v3/certs",
                                                              "bound_issuer": emulator.gcpIssuer], namespace: namespace)
            try await admin.call("POST", "auth/jwt/role/gateway", [
                "role_type": "jwt", "bound_audiences": ["vault/gateway"], "user_claim": "email", "token_ttl": "20s",
            ], namespace: namespace)
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata))
            let login = try VaultLogin(method: .jwt, role: "gateway", identity: .gcp(identity), http: http, environment: [:])
            let payload = try await login.payload(now: Date())

            let inside = VaultClient(endpoint: VaultEndpoint(address: admin.address, namespace: namespace), http: http)
            let token = try await inside.login(mount: "jwt", payload: payload)
            #expect(try await inside.lookupSelf(token.clientToken).ttl > 0)
            await #expect(throws: CloudAuthError.self, "the root namespace has no jwt mount") {
                try await vault().login(mount: "jwt", payload: payload)
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func methodAndProviderMustMatch() throws {
        let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: [:])
        let error = #expect(throws: CloudAuthError.self) {
            try VaultLogin(method: .azure, role: "r", identity: .gcp(identity), http: http, environment: [:])
        }
        #expect(error?.description.contains("needs the azure provider") == true)
    }
}
