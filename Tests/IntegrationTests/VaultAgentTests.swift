import CloudAuth
import CloudEmulator
import Foundation
import Testing
import TestSupport

/// A real `credagent run` keeping a Vault token alive against OpenBao: the served JSON, renewals
/// seen as new versions of the same token, then a fresh login once the max TTL caps renewal.
@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultAgentTests {
    let admin = BaoAdmin.fromEnvironment()!

    @Test(.disabled(if: Peers.sanitizer != nil, "it reads an 8-second lease to the second, which a sanitizer's slowdown moves"))
    func agentRenewsThenLogsInAgainAndServesTheVaultShape() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, ttl: "8s", maxTTL: "14s")
            let agent = try await AgentProcess(label: "vault-agent", config: """
                socket: {path: SOCKET}
                refresh: {min_remaining: 300s, lifetime_fraction: 0.5, jitter: 0.05, backoff: {initial: 200ms, max: 1s}}
                \(admin.vaultCredentialsYAML(mount: mount))
                """, environment: cloudEnvironment(emulator))
            try await withCleanup {
                try await waitUntil("the vault credential is valid", timeout: 20) { try await agent.state("vault") == "valid" }

                let response = try await agent.request("GET", "/v1/credentials/vault")
                #expect(response.status == 200)
                #expect(response.headers["cache-control"] == "no-store")
                let first = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
                #expect(first["kind"] as? String == "vault")
                #expect(first["provider"] as? String == "gcp")
                #expect(first["renewable"] as? Bool == true)
                #expect(first["lease_duration"] as? Int == 8)
                #expect((first["accessor"] as? String)?.isEmpty == false)
                #expect((first["connection"] as? [String: Any])?["address"] as? String == admin.address)
                let firstToken = try #require(first["token"] as? String)
                let info = try await VaultClient(endpoint: VaultEndpoint(address: admin.address), http: CurlHTTPClient())
                    .lookupSelf(Secret(firstToken))
                #expect(info.policies.contains("default"))

                // Follow rotations by long poll until the token changes: renewals first, then a login.
                var version = try #require(first["version"] as? Int)
                var sawRenewal = false
                var newToken: String?
                let deadline = Date().addingTimeInterval(30)
                while newToken == nil, Date() < deadline {
                    let (status, body) = try await agent.json("GET", "/v1/credentials/vault?wait=20&version=\(version)")
                    guard status == 200 else { continue }
                    version = body["version"] as? Int ?? version
                    let token = body["token"] as? String
                    if token == firstToken { sawRenewal = true } else { newToken = token }
                }
                #expect(sawRenewal, "the token is renewed before the max TTL forces a new login")
                let relogin = try #require(newToken, "a fresh login once renewal is capped")
                #expect(try await VaultClient(endpoint: VaultEndpoint(address: admin.address), http: CurlHTTPClient())
                    .lookupSelf(Secret(relogin)).ttl > 0)

                #expect(await agent.stop() == 0)
                for token in [firstToken, relogin] { #expect(!agent.log.contains(token), "a Vault token reached the log") }
                // revoke_on_shutdown is off by default: the token outlives the agent.
                #expect(try await VaultClient(endpoint: VaultEndpoint(address: admin.address), http: CurlHTTPClient())
                    .lookupSelf(Secret(relogin)).ttl > 0)
            } cleanup: {
                _ = await agent.stop()
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func revokeOnShutdownRevokesTheTokenWhenTheAgentStops() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, ttl: "60s", maxTTL: "120s")
            let agent = try await AgentProcess(label: "vault-revoke", config: """
                socket: {path: SOCKET}
                \(admin.vaultCredentialsYAML(mount: mount, extra: ["revoke_on_shutdown: true"]))
                """, environment: cloudEnvironment(emulator))
            try await withCleanup {
                try await waitUntil("the vault credential is valid", timeout: 20) { try await agent.state("vault") == "valid" }
                let token = try #require(try await agent.credential("vault")["token"] as? String)
                let client = VaultClient(endpoint: VaultEndpoint(address: admin.address), http: CurlHTTPClient())
                #expect(try await client.lookupSelf(Secret(token)).ttl > 0)

                #expect(await agent.stop() == 0)
                await #expect(throws: CloudAuthError.self) { try await client.lookupSelf(Secret(token)) }
            } cleanup: {
                _ = await agent.stop()
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }

    /// `tls_server_name` is the name the certificate is checked against: OpenBao's dev certificate
    /// names localhost, not the one given to the first credential.
    @Test(.enabled(if: Peers.env("CREDAGENT_TEST_BAO_TLS_ADDR") != nil, "needs the TLS OpenBao"))
    func tlsServerNameIsTheNameVerified() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        try await withCleanup {
            let address = try #require(Peers.env("CREDAGENT_TEST_BAO_TLS_ADDR"))
            let caFile = try #require(Peers.env("CREDAGENT_TEST_BAO_TLS_CA_FILE"))
            func credential(_ name: String, serverName: String) -> String {
                """
                  - {name: \(name), kind: vault, provider: gcp, method: jwt, address: "\(address)", role: gateway,
                     audience: vault/gateway, mount: missing-mount, ca_file: "\(caFile)", tls_server_name: \(serverName)}
                """
            }
            let agent = try await AgentProcess(label: "vault-sni", config: """
                socket: {path: SOCKET}
                credentials:
                \(credential("wrong-name", serverName: "vault.wrong.invalid"))
                \(credential("right-name", serverName: "localhost"))
                """, environment: cloudEnvironment(emulator))
            try await withCleanup {
                func lastError(_ name: String) async throws -> String? {
                    let rows = try await agent.json("GET", "/v1/credentials").body["credentials"] as? [[String: Any]] ?? []
                    return rows.first { $0["name"] as? String == name }?["last_error"] as? String
                }
                try await waitUntil("both logins failed", timeout: 20) {
                    let wrong = try await lastError("wrong-name"), right = try await lastError("right-name")
                    return wrong != nil && right != nil
                }
                #expect(try await lastError("wrong-name")?.contains("TLS certificate is not trusted") == true)
                // Past TLS, OpenBao itself refuses the login at a mount that does not exist.
                let right = try #require(try await lastError("right-name"))
                #expect(!right.contains("TLS"), "\(right)")
                #expect(right.contains("missing-mount"), "\(right)")
            } cleanup: {
                _ = await agent.stop()
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }
}
