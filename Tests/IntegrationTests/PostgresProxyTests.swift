import AuthProxy
import CloudAuth
import CredentialAgent
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL proxy run in process against the real PostgreSQL, with psql (libpq) as its client.
/// The role's password plays the cloud's token: the test sets it and hands it to the proxy.
final class ProxyFixture: Sendable {
    let user: String
    let directory: String
    /// What libpq's `host` and `port` are for this proxy: the socket directory (port nil), or the
    /// loopback address and port of a TCP listener.
    let host: String
    let port: Int?
    let proxy: PostgresProxy
    let metrics: AgentMetrics
    private let token: NIOLockedValueBox<Secret>
    private static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// `group` is the role the user joins (credagent_cleartext or credagent_md5 select the
    /// `password` and `md5` methods in pg_hba); `server` is where the proxy connects;
    /// `tokenOverride` is what the proxy sends instead of the role's real password.
    init(label: String, memberOf group: String? = nil, md5: Bool = false, maxConnections: Int = 16,
         handshakeTimeout: Duration = .seconds(10), mode: UInt32 = 0o660, allows: @escaping @Sendable (UnixPeerCredentials) -> Bool = { $0.uid == getuid() },
         server: (host: String, port: Int) = (PostgresPeer.host, PostgresPeer.port), caFile: String? = PostgresPeer.caFile,
         tokenOverride: Secret? = nil, tcpHost: String? = nil, idleTimeout: Duration? = nil) async throws {
        let user = uniqueUser("proxy")
        self.user = user
        let token = fakeIAMToken()
        try await PostgresPeer.admin(
            (md5 ? "SET password_encryption = 'md5';\n" : "")
                + "CREATE ROLE \"\(user)\" LOGIN PASSWORD '\(token.reveal())';\n"
                + "GRANT CONNECT ON DATABASE gateway TO \"\(user)\";\n"
                + (group.map { "GRANT \($0) TO \"\(user)\";\n" } ?? ""),
            masking: token)
        self.token = NIOLockedValueBox(tokenOverride ?? token)
        let directory = try Peers.scratchDirectory(label) + "/proxy"
        self.directory = directory
        let metrics = AgentMetrics()
        self.metrics = metrics
        let box = self.token
        let eventLoops = Self.group
        let (proxy, tcpPort) = try await startProxy(unix: .unixDirectory(directory), orLoopbackTCP: tcpHost) { listener in
            let configuration = PostgresProxyConfiguration(
                ProxySettings(credential: label, listener: listener, mode: mode, maxConnections: maxConnections, handshakeTimeout: handshakeTimeout),
                idleTimeout: idleTimeout, upstream: ProxyUpstream(host: server.host, port: server.port, tls: .verifyFull, caFile: caFile))
            return PostgresProxy(configuration: configuration,
                                 credential: { ProxyCredential(username: user, password: box.withLockedValue { $0 }) },
                                 allows: allows, metrics: metrics.proxy(label), logger: Logger(label: "proxy-test"),
                                 group: eventLoops)
        }
        (self.proxy, host, port) = (proxy, tcpHost ?? directory, tcpPort)
    }

    /// Sets a new password on the role and gives it to the proxy, as a rotation does.
    func rotate() async throws {
        let token = fakeIAMToken()
        try await PostgresPeer.admin("ALTER ROLE \"\(user)\" PASSWORD '\(token.reveal())';\n", masking: token)
        self.token.withLockedValue { $0 = token }
    }

    /// psql through the proxy as this fixture's user (or `user`).
    func psql(_ commands: [String], user: String? = nil, prefix: [String] = []) async throws -> ProcessResult {
        try await psqlThroughProxy(directory: host, port: port, user: user ?? self.user, commands, prefix: prefix)
    }

    var socketPath: String { directory + "/.s.PGSQL.5432" }

    /// The raw answer to a startup packet sent by a process running as `nobody` (Python under
    /// setpriv), over this fixture's socket or TCP port.
    func startupAnswerAsNobody() async throws -> String {
        let script = """
            import socket, struct, sys
            target, user, database = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
            if target.startswith("/"):
                s = socket.socket(socket.AF_UNIX); s.connect(target)
            else:
                host, port = target.rsplit(":", 1); s = socket.create_connection((host, int(port)))
            body = struct.pack("!I", 196608) + b"user\\0" + user + b"\\0database\\0" + database + b"\\0\\0"
            s.sendall(struct.pack("!I", len(body) + 4) + body)
            s.settimeout(5)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            sys.stdout.write(data.decode("latin-1"))
            """
        let target = port.map { "\(host):\($0)" } ?? socketPath
        let result = try await ChildProcess.run("/usr/bin/setpriv", [
            "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", script,
            target, user, PostgresPeer.database,
        ], environment: [:])
        guard result.status == 0 else { throw TestFailure("the startup as nobody failed: \(result.stderr)") }
        return result.stdout
    }

    func stop() async { await proxy.stop(grace: .seconds(1)) }

    /// The Prometheus text of the proxy's metrics.
    var exposition: String { String(decoding: metrics.exposition([], now: Date()), as: UTF8.self) }
}

extension PostgresPeer {
    /// The first column of `sql`'s answer, run as the admin user (no secrets in `sql`).
    static func adminQuery(_ sql: String) async throws -> String {
        let result = try await ChildProcess.run(
            (Peers.env("CREDAGENT_TEST_PG_BIN") ?? "/usr/bin") + "/psql",
            ["-X", "-A", "-t", "-h", "127.0.0.1", "-p", String(port),
             "-U", Peers.env("CREDAGENT_TEST_PG_ADMIN_USER") ?? "postgres", "-d", "postgres", "-c", sql],
            environment: ["PGPASSFILE": Peers.env("CREDAGENT_TEST_PG_PASSFILE") ?? "", "PGSSLMODE": "require"])
        guard result.status == 0 else { throw TestFailure("admin query failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs `sql` as the admin superuser (psql on stdin); `masking` is hidden in any error.
    static func admin(_ sql: String, masking secret: Secret) async throws {
        let result = try await ChildProcess.run(
            (Peers.env("CREDAGENT_TEST_PG_BIN") ?? "/usr/bin") + "/psql",
            ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port),
             "-U", Peers.env("CREDAGENT_TEST_PG_ADMIN_USER") ?? "postgres", "-d", "postgres"],
            environment: ["PGPASSFILE": Peers.env("CREDAGENT_TEST_PG_PASSFILE") ?? "", "PGSSLMODE": "require"],
            stdin: Data(sql.utf8))
        guard result.status == 0 else {
            throw TestFailure("admin SQL failed: \(result.stderr.replacingOccurrences(of: secret.reveal(), with: "<redacted>"))")
        }
    }
}

/// psql connected to the proxy socket in `directory` (or its loopback TCP address when `port` is
/// given): no password anywhere. `prefix` runs it
/// under another program (setpriv).
func psqlThroughProxy(directory: String, port: Int? = nil, user: String, _ commands: [String], prefix: [String] = []) async throws -> ProcessResult {
    let conninfo = "host=\(directory) \(port.map { "port=\($0) " } ?? "")user=\(user) dbname=\(PostgresPeer.database) connect_timeout=10"
    let executable = (Peers.env("CREDAGENT_TEST_PG_BIN") ?? "/usr/bin") + "/psql"
    let arguments = ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo] + commands.flatMap { ["-c", $0] }
    guard let program = prefix.first else { return try await ChildProcess.run(executable, arguments, environment: [:]) }
    return try await ChildProcess.run(program, Array(prefix.dropFirst()) + [executable] + arguments, environment: [:])
}

/// The SQLSTATE (`C` field) of the ErrorResponse in `answer`, which must start with it.
func sqlState(in answer: String) -> String? {
    guard answer.hasPrefix("E"), let range = answer.range(of: "\0C") else { return nil }
    return String(answer[range.upperBound...].prefix(5))
}

@Suite("PostgreSQL proxy against the real server", .enabled(if: PostgresPeer.available, "needs scripts/peers/postgres"),
       .serialized)
struct PostgresProxyTests {
    @Test("psql connects through the proxy with no password, as the credential's user, over TLS and SCRAM")
    func psqlThroughProxy() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-scram")
        try await withCleanup {
            let result = try await fixture.psql(["SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(fixture.user) true")
            // The socket is where libpq looks for host=DIR, with the configured mode.
            var info = stat()
            #expect(lstat(fixture.socketPath, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o660)
            #expect(fixture.exposition.contains("credagent_proxy_connections_total{proxy=\"pg-proxy-scram\"} 1"))
            #expect(fixture.exposition.contains("credagent_proxy_bytes_total{proxy=\"pg-proxy-scram\",direction=\"server_to_client\"}"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("The client's startup parameters reach the server: application_name and options are kept")
    func startupParametersKept() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-params")
        try await withCleanup {
            let conninfo = "host=\(fixture.directory) user=\(fixture.user) dbname=\(PostgresPeer.database) application_name=proxied-app options='-c search_path=custom_path'"
            let result = try await ChildProcess.run((Peers.env("CREDAGENT_TEST_PG_BIN") ?? "/usr/bin") + "/psql",
                                                    ["-X", "-A", "-t", "-d", conninfo, "-c", "SELECT current_setting('application_name') || ' ' || current_setting('search_path')"],
                                                    environment: [:])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "proxied-app custom_path")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Cleartext password and MD5 requests are answered with the token", arguments: [false, true])
    func cleartextAndMD5(md5: Bool) async throws {
        let fixture = try await ProxyFixture(label: md5 ? "pg-proxy-md5" : "pg-proxy-cleartext",
                                             memberOf: md5 ? "credagent_md5" : "credagent_cleartext", md5: md5)
        try await withCleanup {
            let result = try await fixture.psql(["SELECT current_user"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == fixture.user)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A rotation leaves an open session running and the next session uses the new token")
    func rotation() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-rotation")
        try await withCleanup {
            async let open = fixture.psql(["SELECT 1", "SELECT pg_sleep(3)", "SELECT 'still ' || current_user"])
            try await Task.sleep(for: .seconds(1))
            try await fixture.rotate()
            let after = try await fixture.psql(["SELECT 'new ' || current_user"])
            #expect(after.status == 0, "\(after.stderr)")
            #expect(after.stdout.contains("new \(fixture.user)"))
            let session = try await open
            #expect(session.status == 0, "\(session.stderr)")
            #expect(session.stdout.contains("still \(fixture.user)"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A query is cancelled through the proxy: psql's cancel on SIGINT reaches the server")
    func cancel() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-cancel")
        try await withCleanup {
            let process = Process()
            // The test process may block SIGINT in the mask a child inherits: python clears it, then runs psql.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
                                     + "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
                                 (Peers.env("CREDAGENT_TEST_PG_BIN") ?? "/usr/bin") + "/psql",
                                 "-X", "-d", "host=\(fixture.directory) user=\(fixture.user) dbname=\(PostgresPeer.database)",
                                 "-c", "SELECT pg_sleep(30)"]
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            let started = Date()
            try process.run()
            // Until the query runs: its session is the proxy's only one with a cancel key.
            try await waitUntil("the query runs", timeout: 20) {
                let rows = try await fixture.psqlAdminCount("SELECT count(*) FROM pg_stat_activity WHERE usename = '\(fixture.user)' AND query LIKE 'SELECT pg_sleep%'")
                return rows == 1
            }
            kill(process.processIdentifier, SIGINT)
            try await waitUntil("psql exits", timeout: 20) { !process.isRunning }
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(stderr.contains("canceling statement due to user request"), "\(stderr)")
            #expect(Date().timeIntervalSince(started) < 25)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A process whose uid is not allowed is refused with 28000 naming the credential")
    func peerNotAllowed() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-peer", mode: 0o666)
        try await withCleanup {
            chmod(fixture.directory, 0o755)
            let result = try await fixture.psql(["SELECT 1"], prefix: ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("credagent proxy for pg-proxy-peer: this process (uid 65534) may not use it"), "\(result.stderr)")
            #expect(fixture.exposition.contains("credagent_proxy_connections_rejected_total{proxy=\"pg-proxy-peer\",reason=\"peer_not_allowed\"} 1"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A loopback TCP listener serves psql as the credential's user, on 127.0.0.1 and ::1")
    func loopbackTCP() async throws {
        for host in ["127.0.0.1", "::1"] {
            let fixture = try await ProxyFixture(label: "pg-proxy-tcp", tcpHost: host)
            let result = try await fixture.psql(["SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
            await fixture.stop()
            #expect(result.status == 0, "\(host): \(result.stderr)")
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(fixture.user) true", "\(host)")
        }
    }

    @Test("A uid not allowed is refused with SQLSTATE 28000 on both listener kinds, its uid found through the kernel")
    func foreignUIDRefusedOnBothListeners() async throws {
        let unix = try await ProxyFixture(label: "pg-proxy-foreign-unix", mode: 0o666)
        try await withCleanup {
            chmod(unix.directory, 0o755)
            let tcp = try await ProxyFixture(label: "pg-proxy-foreign-tcp", tcpHost: "127.0.0.1")
            try await withCleanup {
                for fixture in [unix, tcp] {
                    let answer = try await fixture.startupAnswerAsNobody()
                    #expect(sqlState(in: answer) == "28000", "\(answer)")
                    #expect(answer.contains("this process (uid 65534) may not use it"), "\(answer)")
                    let psql = try await fixture.psql(["SELECT 1"], prefix: ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    #expect(psql.status != 0)
                    #expect(psql.stderr.contains("(uid 65534) may not use it"), "\(psql.stderr)")
                    // The agent's own uid is allowed on the same listener.
                    #expect(try await fixture.psql(["SELECT 1"]).status == 0)
                }
            } cleanup: {
                await tcp.stop()
            }
        } cleanup: {
            await unix.stop()
        }
    }

    @Test("Idle connections of a uid not allowed take no session slot and are closed by the handshake timeout")
    func foreignIdleConnectionsHoldNoSlot() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-foreign-idle", maxConnections: 2, handshakeTimeout: .seconds(3), tcpHost: "127.0.0.1")
        try await withCleanup {
            let scratch = try Peers.scratchDirectory("pg-proxy-foreign-idle") + "/attacker"
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            chmod(scratch, 0o777)
            let connected = scratch + "/connected"
            // Twice as many connections as the proxy has slots, held open and silent.
            let script = """
                import socket, sys, time
                host, port, count, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
                held = [socket.create_connection((host, port)) for _ in range(count)]
                open(marker, "w").close()
                start = time.monotonic()
                for s in held:
                    s.settimeout(30)
                    try:
                        while s.recv(65536):
                            pass
                    except socket.timeout:
                        sys.exit("a connection was still open after 30 s")
                    except ConnectionResetError:
                        pass
                print(f"{time.monotonic() - start:.1f}")
                """
            async let attacker = ChildProcess.run("/usr/bin/setpriv", [
                "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", script,
                fixture.host, String(fixture.port ?? 0), "4", connected,
            ], environment: [:])
            try await waitUntil("the foreign connections are open", timeout: 20) { access(connected, F_OK) == 0 }
            #expect(fixture.proxy.openConnections == 0)
            let own = try await fixture.psql(["SELECT 1"])
            #expect(own.status == 0, "an allowed client was refused while a foreign uid held connections: \(own.stderr)")
            let result = try await attacker
            #expect(result.status == 0, "\(result.stderr)")
            let seconds = Double(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .infinity
            #expect(seconds < 15, "the foreign connections stayed open \(seconds) s (handshake timeout 3 s)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A startup naming user twice is refused with 08P01: the server would take the second, the check saw the first")
    func repeatedUserRefused() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-two-users")
        try await withCleanup {
            let packet = startupPacket(parameters: [("user", fixture.user), ("database", PostgresPeer.database), ("user", "postgres")])
            let answer = try rawExchange(fixture.socketPath, packet)
            #expect(sqlState(in: answer) == "08P01", "\(answer.debugDescription)")
            #expect(answer.contains("parameter 'user' is given twice"), "\(answer.debugDescription)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("idle_timeout closes a session with no bytes either way for that long; a busier one runs on")
    func idleTimeout() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-idle", idleTimeout: .seconds(2))
        try await withCleanup {
            async let busy = fixture.psql(["SELECT pg_sleep(1)", "SELECT pg_sleep(1)", "SELECT pg_sleep(1)", "SELECT 'busy done'"])
            let idle = try await fixture.psql(["SELECT 'before'", "SELECT pg_sleep(4)", "SELECT 'after'"])
            #expect(idle.status != 0)
            #expect(idle.stdout.contains("before"))
            #expect(!idle.stdout.contains("after"))
            #expect(idle.stderr.contains("server closed the connection unexpectedly"), "\(idle.stderr)")
            let busyResult = try await busy
            #expect(busyResult.status == 0, "\(busyResult.stderr)")
            #expect(busyResult.stdout.contains("busy done"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("1,000 idle client connections: other sessions are unaffected and each idle one gets 08P01 at the handshake timeout")
    func thousandIdleConnections() async throws {
        let scale = Peers.timeScale
        let fixture = try await ProxyFixture(label: "pg-proxy-thousand", maxConnections: 1100, handshakeTimeout: .seconds(4 * scale))
        try await withCleanup {
            let idle = try (0..<1000).map { _ in try connectUnix(fixture.socketPath) }
            defer { idle.forEach { close($0) } }
            let started = Date()
            try await waitUntil("the proxy holds 1,000 connections", timeout: 10 * scale) { fixture.proxy.openConnections >= 1000 }
            let session = try await fixture.psql(["SELECT 'served ' || current_user"])
            #expect(session.status == 0, "\(session.stderr)")
            #expect(session.stdout.contains("served \(fixture.user)"))
            #expect(Date().timeIntervalSince(started) < 4 * scale, "the session was set up while the idle connections were held")
            // Each idle client is told why once its handshake time is up, then closed.
            var timedOut = 0
            for fd in idle {
                var wait = timeval(tv_sec: Int(10 * scale), tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 512)
                let count = recv(fd, &buffer, buffer.count, 0)
                if count > 0, sqlState(in: String(decoding: buffer[0..<count], as: UTF8.self)) == "08P01" { timedOut += 1 }
            }
            #expect(timedOut == 1000)
            try await waitUntil("the proxy closed them", timeout: 10) { fixture.proxy.openConnections == 0 }
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Another user than the credential's is refused with 28000")
    func userMismatch() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-user")
        try await withCleanup {
            let result = try await fixture.psql(["SELECT 1"], user: "someone_else")
            #expect(result.status != 0)
            #expect(result.stderr.contains("user \"someone_else\" is not the credential's user; connect as \"\(fixture.user)\""), "\(result.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A token the server rejects is refused with 28000 and the server's reason")
    func tokenRejected() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-rejected", tokenOverride: Secret("not-the-token"))
        try await withCleanup {
            let result = try await fixture.psql(["SELECT 1"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("the database rejected the credential's token: password authentication failed for user"), "\(result.stderr)")
            #expect(!result.stderr.contains("not-the-token"))
            #expect(fixture.exposition.contains("credagent_proxy_auth_failures_total{proxy=\"pg-proxy-rejected\"} 1"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("An unreachable server is reported with 08006 naming the credential")
    func upstreamDown() async throws {
        let down = try RefusingLoopbackPort()
        let fixture = try await ProxyFixture(label: "pg-proxy-down", server: ("127.0.0.1", down.port))
        try await withCleanup {
            let result = try await fixture.psql(["SELECT 1"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("credagent proxy for pg-proxy-down: cannot connect to the database"), "\(result.stderr)")
            let answer = try rawExchange(fixture.socketPath, startupPacket(user: fixture.user))
            #expect(sqlState(in: answer) == "08006")
        } cleanup: {
            await fixture.stop()
            withExtendedLifetime(down) {}
        }
    }

    @Test("A server certificate from another CA is refused with 08006 saying why")
    func wrongCA() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-ca", caFile: PostgresPeer.otherCAFile)
        try await withCleanup {
            let result = try await fixture.psql(["SELECT 1"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("credagent proxy for pg-proxy-ca: cannot connect to the database: the server certificate is not trusted"),
                    "\(result.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A protocol 3.2 startup reaches the server, whose NegotiateProtocolVersion reaches the client before AuthenticationOk")
    func protocol32() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-32")
        try await withCleanup {
            var packet = startupPacket(user: fixture.user)
            packet[7] = 2
            let answer = try rawExchange(fixture.socketPath, packet, timeout: 3)
            // PostgreSQL 15 speaks 3.0: it says so, then the login proceeds.
            #expect(answer.hasPrefix("v"), "\(answer.prefix(40).debugDescription)")
            #expect(answer.contains("R\0\0\0\u{8}\0\0\0\0"), "no AuthenticationOk")
            #expect(answer.contains("Z\0\0\0\u{5}I"), "no ReadyForQuery")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Connections over max_connections are refused with 53300, the others unaffected")
    func tooManyConnections() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-limit", maxConnections: 1)
        try await withCleanup {
            let held = try connectUnix(fixture.socketPath)
            // Closed once: a second close could hit a descriptor another test has opened since.
            var heldOpen = true
            defer { if heldOpen { close(held) } }
            try await waitUntil("the held connection is counted", timeout: 10) { fixture.proxy.openConnections == 1 }
            let answer = try rawExchange(fixture.socketPath, startupPacket(user: fixture.user))
            #expect(sqlState(in: answer) == "53300")
            #expect(answer.contains("too many connections (max_connections is 1)"))
            close(held)
            heldOpen = false
            try await waitUntil("the held connection is gone", timeout: 10) { fixture.proxy.openConnections == 0 }
            let result = try await fixture.psql(["SELECT 1"])
            #expect(result.status == 0, "\(result.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Garbage, a 10 MB length prefix and a startup that never completes get an ErrorResponse and a close")
    func hostileStartups() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-hostile", handshakeTimeout: .seconds(2))
        try await withCleanup {
            let garbage = try rawExchange(fixture.socketPath, Array("GET / HTTP/1.1\r\nhost: x\r\n\r\n".utf8))
            #expect(sqlState(in: garbage) == "08P01")
            var huge: [UInt8] = [0x00, 0xA0, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00]
            huge += [UInt8](repeating: 0x61, count: 1000)
            let hugeAnswer = try rawExchange(fixture.socketPath, huge)
            #expect(sqlState(in: hugeAnswer) == "08P01")
            #expect(hugeAnswer.contains("invalid length of startup packet"))
            let started = Date()
            let partial = try rawExchange(fixture.socketPath, Array(startupPacket(user: fixture.user).prefix(12)))
            #expect(sqlState(in: partial) == "08P01")
            #expect(partial.contains("not completed within 2 s"))
            #expect(Date().timeIntervalSince(started) < 10)
            // Sessions still work.
            let result = try await fixture.psql(["SELECT 1"])
            #expect(result.status == 0, "\(result.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Stopping closes the listener and removes the socket; an open session may finish within the grace")
    func stopGracefully() async throws {
        let fixture = try await ProxyFixture(label: "pg-proxy-stop")
        async let open = fixture.psql(["SELECT pg_sleep(1)", "SELECT 'finished'"])
        try await waitUntil("the session is open", timeout: 20) { fixture.proxy.openConnections == 1 }
        await fixture.proxy.stop(grace: .seconds(20))
        #expect(access(fixture.socketPath, F_OK) != 0)
        let session = try await open
        #expect(session.status == 0, "\(session.stderr)")
        #expect(session.stdout.contains("finished"))
    }
}

extension ProxyFixture {
    /// A number from a query run as the admin user (directly, not through the proxy).
    func psqlAdminCount(_ sql: String) async throws -> Int? {
        let result = try await ChildProcess.run(
            (Peers.env("CREDAGENT_TEST_PG_BIN") ?? "/usr/bin") + "/psql",
            ["-X", "-A", "-t", "-h", "127.0.0.1", "-p", String(PostgresPeer.port),
             "-U", Peers.env("CREDAGENT_TEST_PG_ADMIN_USER") ?? "postgres", "-d", "postgres", "-c", sql],
            environment: ["PGPASSFILE": Peers.env("CREDAGENT_TEST_PG_PASSFILE") ?? "", "PGSSLMODE": "require"])
        return Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// A protocol 3.0 StartupMessage for `user` and the test database.
func startupPacket(user: String) -> [UInt8] {
    startupPacket(parameters: [("user", user), ("database", PostgresPeer.database)])
}

/// A protocol 3.0 StartupMessage with `parameters` as given, in order.
func startupPacket(parameters: [(String, String)]) -> [UInt8] {
    var body: [UInt8] = [0, 3, 0, 0]
    for (name, value) in parameters {
        body += Array(name.utf8) + [0] + Array(value.utf8) + [0]
    }
    body.append(0)
    let length = UInt32(body.count + 4)
    return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + body
}

/// A loopback port bound and never listened on, held while the object lives: a connection to it is
/// refused, and no other test's server can take it meanwhile (a port merely found free can be).
final class RefusingLoopbackPort {
    let port: Int
    private let descriptor: Int32

    init() throws {
        (descriptor, port) = try loopbackSocket()
    }

    deinit { close(descriptor) }
}

/// Builds the proxy `make` returns for a listener and starts it: on `unix`, or when `tcpHost` is
/// given, on a port of that loopback address, returned. A port found free can be taken by another
/// test's socket before the proxy binds it (never after), so a bind refused with "address in use"
/// is tried again on another port, a few times.
func startProxy<Proxy: LocalProxy>(unix: ProxyListenAddress, orLoopbackTCP tcpHost: String?,
                                   _ make: (ProxyListenAddress) -> Proxy) async throws -> (proxy: Proxy, tcpPort: Int?) {
    guard let tcpHost else {
        let proxy = make(unix)
        try await proxy.start()
        return (proxy, nil)
    }
    let attempts = 5
    var attempt = 0
    while true {
        attempt += 1
        let port = try RefusingLoopbackPort().port
        let proxy = make(.loopbackTCP(host: tcpHost, port: port))
        do {
            try await proxy.start()
            return (proxy, port)
        } catch let error as UnixSocketFileError where error.message.contains(String(cString: strerror(EADDRINUSE))) {
            guard attempt < attempts else {
                throw TestFailure("no loopback port on \(tcpHost) could be bound in \(attempts) tries, each taken meanwhile; the last: \(error)")
            }
        }
    }
}
