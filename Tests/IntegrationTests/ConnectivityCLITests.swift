import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// `credagent test` as a process: credentials from a running agent (identities from the cloud
/// emulator) or obtained directly with --config, checked against the real PostgreSQL, Redis and
/// OpenBao peers. The servers accept the tokens because the test sets the role and ACL passwords to
/// what the agent issued, as RDS or ElastiCache would accept them.
@Suite(.enabled(if: PostgresPeer.available && RedisPeer.available, "needs the postgres and redis peers (run scripts/test)"))
struct ConnectivityCLITests {
    let user = uniqueUser("kong")
    let caFile = PostgresPeer.caFile ?? ""

    private var agentConfig: String {
        """
        socket:
          path: SOCKET
        credentials:
        \(PostgresPeer.gcpCredential("orders-db", user: user, more: ["ca_file: \(caFile)"]))
          - name: sessions
            kind: redis
            provider: azure
            host: \(RedisPeer.host)
            port: \(RedisPeer.tlsPort)
            user: \(user)
            ca_file: \(caFile)
        \(PostgresPeer.gcpCredential("unknown-role", user: user + "_nobody", more: ["ca_file: \(caFile)"]))
        """
    }

    @Test func checksEveryCredentialOfARunningAgent() async throws {
        let emulator = try await startEmulator(tokenLifetime: 600)
        try await withCleanup {
            let agent = try await AgentProcess(label: "conn-test", config: agentConfig, environment: cloudEnvironment(emulator))
            try await withCleanup {
                let database = try await agent.credential("orders-db")
                let cache = try await agent.credential("sessions")
                let databaseToken = Secret(database["password"] as? String ?? "")
                let cacheToken = Secret(cache["password"] as? String ?? "")
                try await PostgresPeer.createRole(user, password: databaseToken)
                try await RedisPeer.createUser(user, password: cacheToken)

                let one = try await runCredagent(["test", "orders-db", "--socket", agent.socketPath, "--ca-file", caFile])
                #expect(one.status == 0, "\(one.stdout)\(one.stderr)")
                #expect(one.stdout.hasPrefix("NAME"))
                #expect(one.stdout.contains("orders-db  postgres  gcp       ok"))
                let noProxy = try await runCredagent(["test", "orders-db", "--via-proxy", "--socket", agent.socketPath])
                #expect(noProxy.status == 1 && noProxy.stdout.contains("the credential has no local proxy"), "\(noProxy.stdout)\(noProxy.stderr)")

                let all = try await runCredagent(["test", "--all", "--json", "--socket", agent.socketPath, "--ca-file", caFile])
                #expect(all.status == 1, "one credential's role does not exist, so the run fails: \(all.stdout)\(all.stderr)")
                let document = try #require(try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [String: Any])
                let checks = try #require(document["checks"] as? [[String: Any]])
                let byName = Dictionary(uniqueKeysWithValues: checks.map { ($0["name"] as? String ?? "", $0) })
                #expect(byName["orders-db"]?["ok"] as? Bool == true)
                #expect((byName["orders-db"]?["details"] as? [String: String])?["user"] == user)
                #expect(byName["sessions"]?["ok"] as? Bool == true)
                #expect(byName["sessions"]?["provider"] as? String == "azure")
                #expect((byName["unknown-role"]?["failure"] as? [String: Any])?["cause"] as? String == "rejected")
                for token in [databaseToken, cacheToken] {
                    #expect(!all.stdout.contains(token.reveal()) && !all.stderr.contains(token.reveal()))
                }
            } cleanup: {
                _ = await agent.stop()
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func exitCodesForUsageAndAnAbsentAgent() async throws {
        let neither = try await runCredagent(["test"])
        #expect(neither.status == 2)
        #expect(neither.stderr.contains("NAME or --all"))
        let both = try await runCredagent(["test", "orders-db", "--all"])
        #expect(both.status == 2)
        let directory = try Peers.scratchDirectory("conn-absent")
        let absent = try await runCredagent(["test", "orders-db", "--socket", directory + "/none.sock"])
        #expect(absent.status == 3, "\(absent.stderr)")
        let noConfig = try await runCredagent(["test", "orders-db", "--config", directory + "/missing.yaml"])
        #expect(noConfig.status == 2, "\(noConfig.stderr)")
    }

    /// Without an agent: the command obtains each credential itself. Vault's token comes from a
    /// real jwt login with the emulator's GCP identity; the database's fresh token is not the
    /// one the role was given, and the server says so.
    @Test(.enabled(if: BaoAdmin.available, "needs the OpenBao peer"))
    func checksDirectlyFromAConfigFile() async throws {
        let emulator = try await startEmulator(tokenLifetime: 600)
        try await withCleanup {
            let bao = try #require(BaoAdmin.fromEnvironment())
            let mount = "jwt-\(UUID().uuidString.prefix(8).lowercased())"
            try await bao.enableAuth("jwt", at: mount)
            try await bao.call("POST", "auth/\(mount)/config", ["jwks_url": "\(emulator.gcpIssuer)/oauth2/v3/certs",
                                                                "bound_issuer": emulator.gcpIssuer])
            try await bao.call("POST", "auth/\(mount)/role/gateway", [
                "role_type": "jwt", "bound_audiences": ["vault/gateway"], "user_claim": "email",
                "token_policies": ["default"], "token_ttl": "5m",
            ])
            try await PostgresPeer.createRole(user, password: fakeIAMToken())
            let directory = try Peers.scratchDirectory("conn-direct")
            let config = directory + "/agent.yaml"
            try """
                credentials:
                  - name: vault
                    kind: vault
                    provider: gcp
                    method: jwt
                    audience: vault/gateway
                    address: \(bao.address)
                    mount: \(mount)
                    role: gateway
                \(PostgresPeer.gcpCredential("orders-db", user: user, more: ["ca_file: \(caFile)"]))
                """.write(toFile: config, atomically: true, encoding: .utf8)

            let vault = try await runCredagent(["test", "vault", "--config", config, "--json"], environment: cloudEnvironment(emulator))
            #expect(vault.status == 0, "\(vault.stdout)\(vault.stderr)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(vault.stdout.utf8)) as? [String: Any])
            let check = try #require((document["checks"] as? [[String: Any]])?.first)
            #expect((check["details"] as? [String: String])?["policies"] == "default")

            let database = try await runCredagent(["test", "orders-db", "--config", config], environment: cloudEnvironment(emulator))
            #expect(database.status == 1)
            #expect(database.stdout.contains("FAIL (rejected)"), "\(database.stdout)\(database.stderr)")
            #expect(database.stdout.contains("password authentication failed"))
        } cleanup: {
            try? await emulator.stop()
        }
    }
}
