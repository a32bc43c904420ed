import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// The agent as a process with a `proxy:` block on a postgres credential: psql connects to the
/// proxy's socket with no password, and the agent's rotations reach new sessions while open ones
/// carry on. The test plays the cloud: it sets the role's password to each token the agent issues.
@Suite(.enabled(if: PostgresPeer.available, "needs the postgres peer (run scripts/test)"))
struct AgentProxyTests {
    @Test("An agent's proxy serves psql without a password, across a rotation, and reports it in /metrics")
    func agentProxy() async throws {
        let user = uniqueUser("kong")
        let proxyDirectory = try Peers.scratchDirectory("agent-proxy") + "/orders-db"
        let fixture = try await EmulatedAgent(label: "agent-proxy", config: agentConfig(credentials: PostgresPeer.gcpCredential(
            "orders-db", user: user, more: ["ca_file: \(PostgresPeer.caFile ?? "")", "proxy:", "  listen: unix:\(proxyDirectory)", "  shutdown_grace: 10s"])))
        let agent = fixture.agent
        try await withCleanup {
            let first = try await agent.credential("orders-db")
            try await PostgresPeer.createRole(user, password: Secret(first["password"] as? String ?? ""))

            let before = try await psqlThroughProxy(directory: proxyDirectory, user: user, ["SELECT 'v1 ' || current_user"])
            #expect(before.status == 0, "\(before.stderr)")
            #expect(before.stdout.contains("v1 \(user)"))

            // A session that stays open across the rotation.
            async let open = psqlThroughProxy(directory: proxyDirectory, user: user,
                                              ["SELECT 1", "SELECT pg_sleep(8)", "SELECT 'still ' || current_user"])
            // The session logs in with the first token: the rotation starts once the server lists it.
            try await waitUntil("the open session is logged in", timeout: 30) {
                try await PostgresPeer.adminQuery("SELECT count(*) FROM pg_stat_activity WHERE usename = '\(user)'") != "0"
            }
            // The agent refreshes on request once the held token is 5 s old.
            var second: [String: Any] = [:]
            try await waitUntil("the agent holds version 2", timeout: 30) {
                second = try await agent.json("POST", "/v1/credentials/orders-db/refresh").body
                return second["version"] as? Int == 2
            }
            let newToken = Secret(second["password"] as? String ?? "")
            #expect(newToken.reveal() != first["password"] as? String)
            try await PostgresPeer.setPassword(user, password: newToken)

            let after = try await psqlThroughProxy(directory: proxyDirectory, user: user, ["SELECT 'v2 ' || current_user"])
            #expect(after.status == 0, "\(after.stderr)")
            #expect(after.stdout.contains("v2 \(user)"))
            let session = try await open
            #expect(session.status == 0, "\(session.stderr)")
            #expect(session.stdout.contains("still \(user)"))

            let metrics = String(decoding: try await agent.request("GET", "/metrics").body, as: UTF8.self)
            #expect(metrics.contains("credagent_proxy_connections_total{proxy=\"orders-db\"} 3"), "\(metrics)")
            #expect(metrics.contains("credagent_proxy_upstream_connect_seconds_count{proxy=\"orders-db\"} 3"))

            // The answer names the proxy; `credagent test --via-proxy` goes through it with libpq,
            // from the agent's answer or from the config alone (no secret obtained).
            #expect(second["proxy"] as? [String: String] == ["listen": "unix:\(proxyDirectory)"])
            let viaSocket = try await runCredagent(["test", "orders-db", "--via-proxy", "--socket", agent.socketPath])
            #expect(viaSocket.status == 0, "\(viaSocket.stdout) \(viaSocket.stderr)")
            #expect(viaSocket.stdout.contains(user) && viaSocket.stdout.contains(proxyDirectory), "\(viaSocket.stdout)")
            let viaConfig = try await runCredagent(["test", "orders-db", "--via-proxy", "--config", agent.configPath])
            #expect(viaConfig.status == 0, "\(viaConfig.stdout) \(viaConfig.stderr)")
            #expect(viaConfig.stdout.contains(user), "\(viaConfig.stdout)")
            #expect(!viaSocket.stdout.contains(newToken.reveal()) && !viaConfig.stdout.contains(newToken.reveal()))

            // Stopping removes the proxy's socket.
            let socket = proxyDirectory + "/.s.PGSQL.5432"
            #expect(FileManager.default.fileExists(atPath: socket))
            #expect(await agent.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: socket))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A reload moves a proxy to a new listener while a session on the old one carries on, then removes it")
    func reloadMovesAndRemovesAProxy() async throws {
        let user = uniqueUser("kong")
        let scratch = try Peers.scratchDirectory("agent-proxy-reload")
        let (before, after) = (scratch + "/before", scratch + "/after")
        func config(socket: String, listen: String?) -> String {
            let proxy = listen.map { ["proxy:", "  listen: unix:\($0)", "  shutdown_grace: 10s"] } ?? []
            return agentConfig(socket: socket, credentials: PostgresPeer.gcpCredential(
                "orders-db", user: user, more: ["ca_file: \(PostgresPeer.caFile ?? "")"] + proxy))
        }
        let fixture = try await EmulatedAgent(label: "agent-proxy-reload", config: config(socket: "SOCKET", listen: before))
        let agent = fixture.agent
        try await withCleanup {
            let first = try await agent.credential("orders-db")
            try await PostgresPeer.createRole(user, password: Secret(first["password"] as? String ?? ""))
            async let open = psqlThroughProxy(directory: before, user: user,
                                              ["SELECT 1", "SELECT pg_sleep(6)", "SELECT 'still ' || current_user"])
            try await waitUntil("the open session is logged in", timeout: 30) {
                try await PostgresPeer.adminQuery("SELECT count(*) FROM pg_stat_activity WHERE usename = '\(user)'") != "0"
            }

            try config(socket: agent.socketPath, listen: after).write(toFile: agent.configPath, atomically: true, encoding: .utf8)
            agent.signal(SIGHUP)
            try await waitUntil("the proxy listens in its new directory", timeout: 20) {
                FileManager.default.fileExists(atPath: after + "/.s.PGSQL.5432")
            }
            #expect(!FileManager.default.fileExists(atPath: before + "/.s.PGSQL.5432"), "the old listener is closed")
            // Moving the proxy is no rotation: the same secret and version, the new address served.
            let afterReload = try await agent.credential("orders-db")
            #expect(afterReload["version"] as? Int == first["version"] as? Int)
            #expect(afterReload["password"] as? String == first["password"] as? String)
            #expect(afterReload["proxy"] as? [String: String] == ["listen": "unix:\(after)"])
            let moved = try await psqlThroughProxy(directory: after, user: user, ["SELECT 'moved ' || current_user"])
            #expect(moved.status == 0 && moved.stdout.contains("moved \(user)"), "\(moved.stdout) \(moved.stderr)")
            let session = try await open
            #expect(session.status == 0 && session.stdout.contains("still \(user)"), "the open session carried on: \(session.stderr)")
            #expect(agent.log.contains("proxy closed by a reload; its open sessions carry on"))

            try config(socket: agent.socketPath, listen: nil).write(toFile: agent.configPath, atomically: true, encoding: .utf8)
            agent.signal(SIGHUP)
            try await waitUntil("the removed proxy's socket is gone", timeout: 20) {
                !FileManager.default.fileExists(atPath: after + "/.s.PGSQL.5432")
            }
            let removed = try await psqlThroughProxy(directory: after, user: user, ["SELECT 1"])
            #expect(removed.status != 0)
            #expect(try await agent.request("GET", "/v1/ready").status == 200, "the credential itself is still served")
        } cleanup: {
            await fixture.stop()
        }
    }
}
