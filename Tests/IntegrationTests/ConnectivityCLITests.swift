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

    @Test func checksEveryCredentialOfARunningAgent() async throws {
        let fixture = try await EmulatedAgent(label: "conn-test", config: agentConfig(credentials:
            PostgresPeer.gcpCredential("orders-db", user: user, more: ["ca_file: \(caFile)"]),
            RedisPeer.credential("sessions", user: user),
            PostgresPeer.gcpCredential("unknown-role", user: user + "_nobody", more: ["ca_file: \(caFile)"])))
        let agent = fixture.agent
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
            await fixture.stop()
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

/// `credagent test --via-proxy` against impostors: another uid listening where a credential's
/// proxies should, speaking each protocol well enough to pass the check. The client holds no
/// secret to lose, but it must not report an impostor's answer as the proxy's.
@Suite(.enabled(if: getuid() == 0, "needs root to run the impostor as nobody"))
struct ViaProxyImpostorTests {
    @Test func aProxyServedByAnotherUidIsRefusedOnEveryKindAndListener() async throws {
        let directory = try Peers.scratchDirectory("via-proxy-impostor")
        let listeners = directory + "/listeners"
        try FileManager.default.createDirectory(atPath: listeners, withIntermediateDirectories: true)
        chmod(listeners, 0o777)
        let impostor = Process()
        impostor.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        impostor.arguments = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", Self.impostorServer,
                              listeners + "/.s.PGSQL.5432", listeners + "/vault.sock"]
        let impostorLog = directory + "/impostor.log"
        _ = FileManager.default.createFile(atPath: impostorLog, contents: nil)
        impostor.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: impostorLog))
        try impostor.run()
        // SIGKILL: the child inherits the test thread's signal mask, which may block SIGTERM.
        defer { kill(impostor.processIdentifier, SIGKILL); impostor.waitUntilExit() }
        // It writes the loopback ports it got to `ready` once it listens everywhere.
        var ports: [Int] = []
        try await waitUntil("the impostor listens", timeout: 30) {
            // An exited child may linger as a zombie that `kill(pid, 0)` still finds; Python's
            // traceback on standard error tells a failed start sooner.
            let log = (try? String(contentsOfFile: impostorLog, encoding: .utf8)) ?? ""
            guard kill(impostor.processIdentifier, 0) == 0, log.isEmpty else { throw TestFailure("the impostor failed: \(log)") }
            ports = ((try? String(contentsOfFile: listeners + "/ready", encoding: .utf8)) ?? "").split(separator: " ").compactMap { Int($0) }
            return ports.count == 2
        }
        let (redisPort, vaultPort) = (ports[0], ports[1])

        let config = directory + "/agent.yaml"
        try """
            socket: {path: \(directory)/agent.sock}
            credentials:
              - {name: db, kind: postgres, provider: gcp, host: db.internal, database: app, user: kong,
                 proxy: {listen: "unix:\(listeners)"}}
              - {name: cache, kind: redis, provider: azure, host: cache.internal, user: kong,
                 proxy: {listen: "127.0.0.1:\(redisPort)"}}
              - {name: vault-unix, kind: vault, provider: aws, method: aws_iam, address: "https://vault.internal:8200", role: gw,
                 proxy: {listen: "unix:\(listeners)/vault.sock"}}
              - {name: vault-tcp, kind: vault, provider: aws, method: aws_iam, address: "https://vault.internal:8200", role: gw,
                 proxy: {listen: "127.0.0.1:\(vaultPort)"}}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        chmod(config, 0o600)

        let refused = try await runCredagent(["test", "--all", "--via-proxy", "--config", config, "--json"])
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        let checks = try Self.checks(refused.stdout)
        #expect(checks.count == 4)
        for (name, check) in checks {
            #expect(check["ok"] as? Bool == false, "\(name) believed the impostor")
            #expect(check["cause"] as? String == "untrusted_server", "\(name): \(check)")
            #expect((check["message"] as? String)?.contains("served by uid 65534, not by a trusted uid") == true, "\(name): \(check)")
        }

        // Declared as the agent's uid, the same servers are believed: what refused them was the uid.
        let believed = try await runCredagent(["test", "--all", "--via-proxy", "--config", config, "--json", "--server-uid", "65534"])
        #expect(believed.status == 0, "\(believed.stdout)\(believed.stderr)")
        for (name, check) in try Self.checks(believed.stdout) {
            #expect(check["ok"] as? Bool == true, "\(name): \(check)")
        }
    }

    private static func checks(_ output: String) throws -> [String: [String: Any]] {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(output)")
        let checks = try #require(document["checks"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: checks.map { check in
            var flat = check
            if let failure = check["failure"] as? [String: Any] { flat.merge(failure) { old, _ in old } }
            return (check["name"] as? String ?? "", flat)
        })
    }

    /// Answers as a Postgres server (trust login, one row to any query), a Redis server and Vault's
    /// lookup-self, on the Unix sockets given and on two loopback ports of its choosing, which it
    /// writes to `ready` beside the sockets.
    static let impostorServer = #"""
        import os, socket, struct, sys, threading
        pg_path, vault_path = sys.argv[1], sys.argv[2]

        def recv_exact(c, n):
            data = b""
            while len(data) < n:
                chunk = c.recv(n - len(data))
                if not chunk: raise EOFError
                data += chunk
            return data

        def message(kind, payload): return kind + struct.pack("!I", len(payload) + 4) + payload

        def postgres(c):
            while True:
                length, code = struct.unpack("!II", recv_exact(c, 8))
                rest = recv_exact(c, length - 8)
                if code in (80877103, 80877104): c.sendall(b"N"); continue
                break
            c.sendall(message(b"R", struct.pack("!I", 0)) + message(b"S", b"server_version\x0099.0-impostor\x00")
                      + message(b"Z", b"I"))
            while True:
                kind = recv_exact(c, 1); length, = struct.unpack("!I", recv_exact(c, 4)); recv_exact(c, length - 4)
                if kind == b"X": return
                value = b"impostor"
                field = b"current_user\x00" + struct.pack("!IhIhih", 0, 0, 19, 64, -1, 0)
                c.sendall(message(b"T", struct.pack("!h", 1) + field)
                          + message(b"D", struct.pack("!hI", 1, len(value)) + value)
                          + message(b"C", b"SELECT 1\x00") + message(b"Z", b"I"))

        def redis(c):
            buffer = b""
            while True:
                chunk = c.recv(4096)
                if not chunk: return
                buffer += chunk
                while b"\r\n" in buffer and buffer.startswith(b"*"):
                    parts = buffer.split(b"\r\n")
                    count = int(parts[0][1:])
                    if len(parts) < 1 + 2 * count + 1: break
                    words = [parts[2 + 2 * i] for i in range(count)]
                    buffer = b"\r\n".join(parts[1 + 2 * count:])
                    if words[0].upper() == b"PING": c.sendall(b"+PONG\r\n")
                    else:
                        info = b"redis_version:0.0.0-impostor\r\n"
                        c.sendall(b"$%d\r\n%s\r\n" % (len(info), info))

        def vault(c):
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = c.recv(4096)
                if not chunk: return
                request += chunk
            body = b'{"data":{"accessor":"impostor","display_name":"impostor","policies":["root"],"ttl":0,"renewable":false}}'
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

        def serve(server, handler):
            server.listen(16)
            while True:
                c, _ = server.accept()
                def run(c=c):
                    try: handler(c)
                    except Exception: pass
                    finally: c.close()
                threading.Thread(target=run, daemon=True).start()

        servers = []
        for path, handler in ((pg_path, postgres), (vault_path, vault)):
            s = socket.socket(socket.AF_UNIX); s.bind(path); os.chmod(path, 0o666); servers.append((s, handler))
        ports = []
        for handler in (redis, vault):
            s = socket.socket(); s.bind(("127.0.0.1", 0)); servers.append((s, handler)); ports.append(s.getsockname()[1])
        threads = [threading.Thread(target=serve, args=pair, daemon=True) for pair in servers]
        for t in threads: t.start()
        ready = os.path.join(os.path.dirname(pg_path), "ready")
        with open(ready + ".partial", "w") as f: f.write("%d %d" % tuple(ports))
        os.rename(ready + ".partial", ready)
        for t in threads: t.join()
        """#
}
