import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// Connection churn, as a client pool that reconnects all day (or an attacker) makes it: the
/// agent's memory comes back after each proxied connection ends. Each kind is churned through
/// the real agent to the real server: PostgreSQL logins through its proxy, Redis PINGs through
/// its proxy (TLS upstream), and Vault requests through its proxy, with one answered by OpenBao
/// and one refused locally.
@Suite(.enabled(if: PostgresPeer.available && RedisPeer.available && BaoAdmin.available, "needs the postgres, redis and OpenBao peers"),
       .disabled(if: Peers.sanitizer != nil, "memory figures mean nothing under a sanitizer (ASan holds freed memory back; its leak check covers this)"))
struct ProxyChurnTests {
    @Test func connectionsThatComeAndGoLeaveNoMemoryBehind() async throws {
        let admin = try #require(BaoAdmin.fromEnvironment())
        let emulator = try await startEmulator(tokenLifetime: 3600)
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, ttl: "1h", maxTTL: "2h")
            let user = uniqueUser("churn")
            let proxies = try Peers.scratchDirectory("proxy-churn") + "/proxies"
            let agent = try await AgentProcess(label: "proxy-churn", config: """
                socket: {path: SOCKET}
                \(admin.vaultCredentialsYAML(mount: mount, extra: ["proxy: {listen: \"unix:\(proxies)/vault.sock\"}"]))
                \(PostgresPeer.gcpCredential("db", user: user, more: ["ca_file: \(PostgresPeer.caFile ?? "")", "proxy: {listen: \"unix:\(proxies)\"}"]))
                \(RedisPeer.credential("cache", user: user, more: ["proxy: {listen: \"unix:\(proxies)/cache.sock\"}"]))
                """, environment: cloudEnvironment(emulator))
            try await withCleanup {
                try await PostgresPeer.createRole(user, password: Secret(try await agent.credential("db")["password"] as? String ?? ""))
                try await RedisPeer.createUser(user, password: Secret(try await agent.credential("cache")["password"] as? String ?? ""))
                _ = try await agent.credential("vault")
                let arguments = [proxies, user, PostgresPeer.database]
                // A warm-up settles the allocator's pools and the proxies' event loops.
                let warmUp = try await ChildProcess.python(["-c", Self.churn, "200"] + arguments)
                #expect(warmUp.status == 0, "\(warmUp.stderr)")
                let before = residentMB(agent.pid)
                let churn = try await ChildProcess.python(["-c", Self.churn, "1000"] + arguments)
                #expect(churn.status == 0, "\(churn.stderr)")
                let after = residentMB(agent.pid)
                // A session that outlived its connections would keep its channels, pipeline and
                // buffers: about 1.4 KB each, over 5 MB for these 4,000 connections.
                #expect(after - before < 2, "RSS went from \(before) MB to \(after) MB over \(churn.stdout)")
                let metrics = try await agent.request("GET", "/metrics").bodyText
                for proxy in ["db", "cache", "vault"] {
                    #expect(metrics.contains("credagent_proxy_connections{proxy=\"\(proxy)\"} 0.0"), "\(metrics)")
                }
                #expect(await agent.stop() == 0)
            } cleanup: {
                _ = await agent.stop()
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }

    /// `COUNT` rounds, each: a PostgreSQL login and Terminate through the proxy, a Redis PING,
    /// and two Vault requests (one answered by Vault, one refused by the proxy for lacking
    /// `X-Vault-Request`), each on a connection of its own. Prints the number of connections.
    static let churn = #"""
        import socket, struct, sys
        count, proxies, user, database = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

        def connect(path):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(20)
            s.connect(path)
            return s

        def read_until(s, done):
            data = b""
            while not done(data):
                chunk = s.recv(65536)
                if not chunk: raise SystemExit("closed early after %r" % data[:200])
                data += chunk
            return data

        def postgres():
            s = connect(proxies + "/.s.PGSQL.5432")
            params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
            s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
            data = read_until(s, lambda d: b"Z\0\0\0\x05I" in d or d[:1] == b"E")
            if data[:1] == b"E": raise SystemExit("postgres refused: %r" % data[:200])
            s.sendall(b"X\0\0\0\x04")
            s.close()

        def redis():
            s = connect(proxies + "/cache.sock")
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            if read_until(s, lambda d: d.endswith(b"\r\n")) != b"+PONG\r\n": raise SystemExit("redis did not answer PONG")
            s.close()

        def vault(header):
            s = connect(proxies + "/vault.sock")
            s.sendall(b"GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: vault\r\n" + header + b"Connection: close\r\n\r\n")
            answer = read_until(s, lambda d: False if b"\r\n\r\n" not in d else len(d) >= d.index(b"\r\n\r\n") + 4 + int(
                [l for l in d.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1]))
            expected = b"HTTP/1.1 200" if header else b"HTTP/1.1 412"
            if not answer.startswith(expected): raise SystemExit("vault answered %r" % answer[:100])
            s.close()

        for _ in range(count):
            postgres(); redis(); vault(b"X-Vault-Request: true\r\n"); vault(b"")
        print("%d connections" % (4 * count))
        """#
}
