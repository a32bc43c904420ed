import CloudAuth
import CloudEmulator
import CredentialAgent
import CredentialModel
import Foundation
import TestSupport
import Logging
import Testing

/// The Vault credential source against a real OpenBao with short token TTLs: renewal while the
/// max TTL allows, then a fresh login; and the one-shot `credagent token vault`.
@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultSourceTests {
    let admin = BaoAdmin.fromEnvironment()!
    let http = CurlHTTPClient()

    @Test func renewsWhileTheMaxTTLAllowsThenLogsInAgain() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, ttl: "18s", maxTTL: "30s")
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata))
            let login = try VaultLogin(method: .jwt, role: "gateway", audience: "vault/gateway", identity: .gcp(identity),
                                       http: http, environment: [:])
            let source = VaultCredentialSource(
                client: VaultClient(endpoint: VaultEndpoint(address: admin.address), http: http), login: login,
                mount: mount, revokeOnShutdown: true, logger: Logger(label: "test"))
            let vault = VaultClient(endpoint: VaultEndpoint(address: admin.address), http: http)

            let first = try await source.fetch(now: Date())
            #expect(first.attributes["lease_duration"] == .int(18))
            #expect(first.attributes["renewable"] == .bool(true))

            try await Task.sleep(for: .seconds(4))
            let renewed = try await source.fetch(now: Date())
            #expect(renewed.secret == first.secret, "a renewal keeps the token")
            #expect(renewed.attributes["accessor"] == first.attributes["accessor"])
            #expect(renewed.expiresAt > first.expiresAt)

            // Fifteen seconds after login at most fifteen of the thirty max-TTL seconds remain, less
            // than the eighteen-second TTL: the renewal is capped, and the refresh after it must log in
            // again. (Lifetimes long enough that a loaded machine's delays cannot expire the token first.)
            try await Task.sleep(for: .seconds(11))
            let capped = try await source.fetch(now: Date())
            #expect(capped.secret == first.secret)
            if case .int(let lease) = capped.attributes["lease_duration"] { #expect(lease < 18) } else { Issue.record("no lease") }
            let fresh = try await source.fetch(now: Date())
            #expect(fresh.secret != first.secret, "past the cap the source logs in again")
            #expect(fresh.attributes["lease_duration"] == .int(18))
            #expect(try await vault.lookupSelf(fresh.secret).policies.contains("default"))

            await source.shutdown()
            await #expect(throws: CloudAuthError.self) { try await vault.lookupSelf(fresh.secret) }
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func revokedTokenLeadsToAFreshLogin() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, ttl: "30s", maxTTL: "60s")
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata))
            let login = try VaultLogin(method: .jwt, role: "gateway", audience: "vault/gateway", identity: .gcp(identity),
                                       http: http, environment: [:])
            let vault = VaultClient(endpoint: VaultEndpoint(address: admin.address), http: http)
            let source = VaultCredentialSource(client: vault, login: login, mount: mount, logger: Logger(label: "test"))
            let first = try await source.fetch(now: Date())
            try await vault.revokeSelf(first.secret)
            let second = try await source.fetch(now: Date())
            #expect(second.secret != first.secret)
            #expect(try await vault.lookupSelf(second.secret).ttl > 0)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func oneShotTokenVaultCommand() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, ttl: "30s", maxTTL: "60s")
            let dir = try Peers.scratchDirectory("token-vault")
            let config = """
            socket: {path: \(dir)/agent.sock}
            \(admin.vaultCredentialsYAML(mount: mount))
            """
            try config.write(toFile: "\(dir)/agent.yaml", atomically: true, encoding: .utf8)
            let result = try await runCredagent(["token", "vault", "--config", "\(dir)/agent.yaml", "vault"],
                                                environment: emulator.environment(for: .gcpMetadata))
            #expect(result.status == 0, "\(result.stderr)")
            let token = Secret(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            let info = try await VaultClient(endpoint: VaultEndpoint(address: admin.address), http: http).lookupSelf(token)
            #expect(info.policies.contains("default"))

            let missing = try await runCredagent(["token", "vault", "--config", "\(dir)/agent.yaml", "nope"])
            #expect(missing.status == 2)
            #expect(missing.stderr.contains("no credential named 'nope'"))

            // A wrong audience: Vault's own error, exit 1, no token on stdout.
            let wrong = config.replacingOccurrences(of: "audience: vault/gateway", with: "audience: elsewhere")
            try wrong.write(toFile: "\(dir)/wrong.yaml", atomically: true, encoding: .utf8)
            let refused = try await runCredagent(["token", "vault", "--config", "\(dir)/wrong.yaml", "vault"],
                                                 environment: emulator.environment(for: .gcpMetadata))
            #expect(refused.status == 1)
            #expect(refused.stdout.isEmpty)
            #expect(refused.stderr.contains("aud"))
        } cleanup: {
            try? await emulator.stop()
        }
    }
}
