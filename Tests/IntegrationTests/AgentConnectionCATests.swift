import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// The agent names each credential's `ca_file` in the `connection` object, so that
/// `credagent test` over the socket verifies the servers (the real PostgreSQL and Redis peers,
/// whose certificates come from a private CA) without `--ca-file`; `--ca-file` still overrides it.
@Suite(.enabled(if: PostgresPeer.available && RedisPeer.available && PostgresPeer.caFile != nil,
                "needs the postgres and redis peers (run scripts/test)"))
struct AgentConnectionCATests {
    @Test func testOverTheSocketVerifiesWithTheConfiguredCA() async throws {
        let user = uniqueUser("kongca")
        let caFile = try #require(PostgresPeer.caFile)
        let fixture = try await EmulatedAgent(label: "agent-ca", config: agentConfig(credentials:
            PostgresPeer.gcpCredential("orders-db", user: user, more: ["ca_file: \(caFile)"]), RedisPeer.credential("sessions", user: user)))
        let agent = fixture.agent
        try await withCleanup {
            let database = try await agent.credential("orders-db")
            let cache = try await agent.credential("sessions")
            #expect((database["connection"] as? [String: Any])?["ca_file"] as? String == caFile)
            #expect((cache["connection"] as? [String: Any])?["ca_file"] as? String == caFile)
            try await PostgresPeer.createRole(user, password: Secret(database["password"] as? String ?? ""))
            try await RedisPeer.createUser(user, password: Secret(cache["password"] as? String ?? ""))

            let checked = try await runCredagent(["test", "--all", "--socket", agent.socketPath])
            #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")
            #expect(checked.stdout.contains("orders-db  postgres  gcp       ok"), "\(checked.stdout)")

            if let otherCA = PostgresPeer.otherCAFile {
                let overridden = try await runCredagent(["test", "orders-db", "--socket", agent.socketPath, "--ca-file", otherCA])
                #expect(overridden.status == 1, "a CA that did not sign the server fails: \(overridden.stdout)")
            }
            #expect(await agent.stop() == 0)
        } cleanup: {
            await fixture.stop()
        }
    }
}
