import CloudAuth
import Foundation
import Testing

/// VaultClient against a real OpenBao: login, renew-self, lookup-self, revoke-self and errors.
@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultClientTests {
    let admin = BaoAdmin.fromEnvironment()!

    func client(_ address: String? = nil, tls: TLSOptions = TLSOptions()) -> VaultClient {
        VaultClient(endpoint: VaultEndpoint(address: address ?? admin.address, tls: tls), http: CurlHTTPClient())
    }

    @Test func loginRenewLookupRevoke() async throws {
        let role = try await admin.makeAppRole(ttl: "30s", maxTTL: "60s")
        let vault = client()
        let token = try await vault.login(mount: role.mount, payload: ["role_id": role.roleID, "secret_id": role.secretID.reveal()])
        #expect(token.leaseDuration == 30)
        #expect(token.renewable)
        #expect(!token.accessor.isEmpty)
        #expect(token.policies.contains("default"))

        let info = try await vault.lookupSelf(token.clientToken)
        #expect(info.accessor == token.accessor)
        #expect(info.ttl > 0 && info.ttl <= 30)
        #expect(info.policies.contains("default"))

        let renewed = try await vault.renewSelf(token.clientToken, increment: 30)
        #expect(renewed.clientToken == token.clientToken)
        #expect(renewed.leaseDuration > 0 && renewed.leaseDuration <= 30)

        try await vault.revokeSelf(token.clientToken)
        let error = await #expect(throws: CloudAuthError.self) { try await vault.lookupSelf(token.clientToken) }
        #expect(error?.code == .rejected)
        #expect(error?.description.contains("403") == true)
        #expect(error?.description.contains(token.clientToken.reveal()) == false)
    }

    @Test func renewalIsCappedByTheMaxTTL() async throws {
        // Lifetimes long enough that a loaded machine's delays cannot expire the token first.
        let role = try await admin.makeAppRole(ttl: "20s", maxTTL: "25s")
        let vault = client()
        let token = try await vault.login(mount: role.mount, payload: ["role_id": role.roleID, "secret_id": role.secretID.reveal()])
        try await Task.sleep(for: .seconds(8))
        let renewed = try await vault.renewSelf(token.clientToken, increment: 20)
        // Eight seconds in, at most seventeen of the 25 max-TTL seconds remain.
        #expect(renewed.leaseDuration <= 17)
    }

    @Test func loginErrorsShowVaultsMessageAndNoSecret() async throws {
        let role = try await admin.makeAppRole(ttl: "30s", maxTTL: "60s")
        let wrong = Secret(UUID().uuidString.lowercased())
        let error = await #expect(throws: CloudAuthError.self) {
            try await client().login(mount: role.mount, payload: ["role_id": role.roleID, "secret_id": wrong.reveal()])
        }
        #expect(error?.code == .rejected)
        #expect(error?.description.contains("invalid") == true)
        #expect(error?.description.contains(wrong.reveal()) == false)
        #expect(error?.source.contains("/v1/auth/\(role.mount)/login") == true)
    }

    @Test func unknownMountIsNamed() async throws {
        let error = await #expect(throws: CloudAuthError.self) {
            try await client().login(mount: "no-such-mount", payload: ["role": "x"])
        }
        #expect(error?.description.contains("no-such-mount") == true)
    }

    @Test func unreachableVaultSaysSo() async throws {
        let error = await #expect(throws: CloudAuthError.self) {
            try await client("http://127.0.0.1:9").lookupSelf(Secret("x"))
        }
        #expect(error?.code == .unavailable)
    }

    @Test func tlsWithTheRightCAWorksAndWithoutItFails() async throws {
        let address = try #require(Peers.env("CREDAGENT_TEST_BAO_TLS_ADDR"))
        let caFile = try #require(Peers.env("CREDAGENT_TEST_BAO_TLS_CA_FILE"))
        let root = admin.rootToken
        let info = try await client(address, tls: TLSOptions(caFile: caFile)).lookupSelf(root)
        #expect(info.policies.contains("root"))
        let error = await #expect(throws: CloudAuthError.self) { try await client(address).lookupSelf(root) }
        #expect(error?.description.contains("certificate") == true)
    }
}
