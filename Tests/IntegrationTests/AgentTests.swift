import CloudAuth
import CloudEmulator
import CredentialAgent
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Credentials from every provider: AWS tokens signed with keys from moto's IMDS, Azure and GCP
/// tokens from the emulator.
private let everyProviderConfig = """
    socket:
      path: SOCKET
    refresh:
      backoff: {initial: 200ms, max: 1s}
      client_min_interval: 4s
    credentials:
      - name: orders-db
        kind: postgres
        provider: aws
        host: orders.abc.us-east-1.rds.amazonaws.com
        port: 5432
        user: kong
        database: kong
      - name: sessions
        kind: redis
        provider: aws
        cache_name: sessions-cache
        user: kong
        host: master.sessions-cache.abc.use1.cache.amazonaws.com
        port: 6379
      - name: az-pg
        kind: postgres
        provider: azure
        host: pg.postgres.database.azure.com
        user: kong-identity
        database: kong
      - name: gcp-sql
        kind: postgres
        provider: gcp
        host: 10.0.0.5
      - name: gcp-redis
        kind: redis
        provider: gcp
        host: 10.0.0.6
    """

@Suite(.serialized) struct AgentTests {
    @Test(.enabled(if: Peers.moto != nil, "needs moto (scripts/test starts it)"))
    func servesEveryRouteForEveryProvider() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await AgentProcess(label: "agent-routes", config: everyProviderConfig,
                                           environment: cloudEnvironment(emulator))
        try await waitUntil("every credential is ready", timeout: 20) {
            try await agent.request("GET", "/v1/ready").status == 200
        }

        let (listStatus, listing) = try await agent.json("GET", "/v1/credentials")
        #expect(listStatus == 200)
        let rows = try #require(listing["credentials"] as? [[String: Any]])
        #expect(rows.map { $0["name"] as? String } == ["orders-db", "sessions", "az-pg", "gcp-sql", "gcp-redis"])
        #expect(rows.allSatisfy { $0["state"] as? String == "valid" && $0["version"] as? Int == 1 })
        #expect(rows.allSatisfy { $0["password"] == nil && $0["token"] == nil })

        let rds = try await agent.credential("orders-db")
        #expect(rds["kind"] as? String == "postgres")
        #expect(rds["username"] as? String == "kong")
        let rdsToken = try #require(rds["password"] as? String)
        #expect(rdsToken.hasPrefix("orders.abc.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=kong&"))
        #expect(rdsToken.contains("X-Amz-Credential=test-key%2F"))
        #expect(rdsToken.contains("%2Fus-east-1%2Frds-db%2Faws4_request"))
        #expect(rdsToken.contains("X-Amz-Security-Token=test-session-token"))
        let connection = try #require(rds["connection"] as? [String: Any])
        #expect(connection["host"] as? String == "orders.abc.us-east-1.rds.amazonaws.com")
        #expect(connection["port"] as? Int == 5432)
        #expect(connection["database"] as? String == "kong")
        #expect(connection["sslmode"] as? String == "verify-full")
        let issued = try #require((rds["issued_at"] as? String).flatMap(ISO8601DateFormatter().date(from:)))
        let expires = try #require((rds["expires_at"] as? String).flatMap(ISO8601DateFormatter().date(from:)))
        #expect(expires.timeIntervalSince(issued) == 900)

        let redis = try await agent.credential("sessions")
        #expect((redis["password"] as? String)?.hasPrefix("sessions-cache/?Action=connect&User=kong&") == true)
        #expect((redis["password"] as? String)?.contains("%2Felasticache%2Faws4_request") == true)
        #expect((redis["connection"] as? [String: Any])?["tls"] as? Bool == true)

        let azure = try await agent.credential("az-pg")
        #expect(azure["username"] as? String == "kong-identity")
        #expect(emulator.wasIssued(try #require(azure["password"] as? String)))
        let gcpSQL = try await agent.credential("gcp-sql")
        #expect(gcpSQL["username"] as? String == "credagent@credagent-emulator.iam")
        #expect(emulator.wasIssued(try #require(gcpSQL["password"] as? String)))
        let gcpRedis = try await agent.credential("gcp-redis")
        #expect(gcpRedis["username"] is NSNull)

        // Secrets are never cached by clients; other answers are JSON.
        let raw = try await agent.request("GET", "/v1/credentials/orders-db")
        #expect(raw.headers["Cache-Control"] == "no-store")
        #expect(raw.headers["Content-Type"] == "application/json")

        // A forced refresh makes a new version once the secret is client_min_interval (4 s) old;
        // within that of a new secret it answers with that (4 s leaves room for a loaded machine).
        // min_valid asks for at most half the lifetime.
        try await Task.sleep(for: .seconds(4))
        let refreshed = try await agent.json("POST", "/v1/credentials/az-pg/refresh")
        #expect(refreshed.status == 200)
        #expect(refreshed.body["version"] as? Int == 2)
        let again = try await agent.json("POST", "/v1/credentials/az-pg/refresh")
        #expect(again.body["version"] as? Int == 2)
        let minValid = try await agent.json("GET", "/v1/credentials/gcp-sql?min_valid=100000")
        #expect(minValid.status == 200)
        #expect(minValid.body["version"] as? Int == 1, "more than a fresh token can give is not a reason to refresh")
        let enough = try await agent.json("GET", "/v1/credentials/orders-db?min_valid=60")
        #expect(enough.body["version"] as? Int == 1)

        // A long poll on the current version answers 304 after the wait; on an old one at once.
        let started = Date()
        let unchanged = try await agent.request("GET", "/v1/credentials/orders-db?wait=1&version=1")
        #expect(unchanged.status == 304)
        #expect(Date().timeIntervalSince(started) >= 0.9)
        let outdated = try await agent.json("GET", "/v1/credentials/az-pg?wait=30&version=1")
        #expect(outdated.status == 200)
        #expect(outdated.body["version"] as? Int == 2)

        let health = try await agent.json("GET", "/v1/health")
        #expect(health.status == 200)
        #expect(health.body["status"] as? String == "ok")
        let metrics = try await agent.request("GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.bodyText.contains(#"credagent_refresh_total{credential="az-pg",result="success"} 2"#))
        #expect(metrics.bodyText.contains(#"credagent_expiry_timestamp_seconds{credential="orders-db"}"#))
        #expect(metrics.bodyText.contains(#"credagent_requests_total{route="/v1/credentials/{name}",status="200"}"#))
        #expect(!metrics.bodyText.contains(rdsToken.prefix(60)))

        // Errors are JSON with a code.
        let unknown = try await agent.json("GET", "/v1/credentials/nope")
        #expect(unknown.status == 404)
        #expect((unknown.body["error"] as? [String: Any])?["code"] as? String == "not_found")
        #expect(try await agent.json("GET", "/v2/whatever").status == 404)
        #expect(try await agent.json("GET", "/v1/credentials/Not_A_Name!").status == 404)
        let wrongMethod = try await agent.request("DELETE", "/v1/credentials/az-pg")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["Allow"] == "GET")
        #expect(try await agent.request("GET", "/v1/credentials/az-pg/refresh").status == 405)
        let badQuery = try await agent.json("GET", "/v1/credentials/az-pg?wait=5")
        #expect(badQuery.status == 400)

        // The CLI against the same agent.
        let get = try await runCredagent(["get", "orders-db", "--socket", agent.socketPath, "--field", "connection.port"])
        #expect(get.status == 0)
        #expect(get.stdout == "5432\n")
        // --field prints a string bare, a number as a number, a flag as true or false; an object
        // or a field the credential lacks is a usage error that says which.
        for (name, field, output) in [("sessions", "connection.tls", "true\n"), ("orders-db", "version", "1\n"),
                                      ("orders-db", "username", "kong\n")] {
            let picked = try await runCredagent(["get", name, "--socket", agent.socketPath, "--field", field])
            #expect(picked.status == 0 && picked.stdout == output, "\(field): \(picked.stdout) \(picked.stderr)")
        }
        for (field, message) in [("connection", "'connection' is an object"), ("password.x", "no field 'password.x'")] {
            let refused = try await runCredagent(["get", "orders-db", "--socket", agent.socketPath, "--field", field])
            #expect(refused.status == 2 && refused.stderr.contains(message), "\(field): \(refused.stderr)")
        }
        let pgpass = try await runCredagent(["get", "orders-db", "--socket", agent.socketPath, "--format", "pgpass"])
        #expect(pgpass.stdout.hasPrefix("orders.abc.us-east-1.rds.amazonaws.com:5432:kong:kong:orders.abc.us-east-1.rds.amazonaws.com\\:5432/?Action=connect"))
        let list = try await runCredagent(["list"], environment: ["CREDAGENT_SOCKET": agent.socketPath])
        #expect(list.status == 0)
        #expect(list.stdout.hasPrefix("NAME"))
        #expect(list.stdout.contains("orders-db"))
        #expect(!list.stdout.contains(rdsToken.prefix(60)))
        let missing = try await runCredagent(["get", "nope", "--socket", agent.socketPath])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no credential named 'nope'"))
        let invalid = try await runCredagent(["get", "Bad Name", "--socket", agent.socketPath])
        #expect(invalid.status == 2)
        let unreachable = try await runCredagent(["list", "--socket", agent.directory + "/absent.sock"])
        #expect(unreachable.status == 3)

        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func rotationIsSeenThroughLongPollAndNoSecretIsLogged() async throws {
        let emulator = try await startEmulator(tokenLifetime: 20)
        let agent = try await AgentProcess(label: "agent-rotation", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator))
        try await waitUntil("ready", timeout: 10) { try await agent.request("GET", "/v1/ready").status == 200 }
        var secrets: Set<String> = []
        var current = try await agent.credential("az-pg")
        secrets.insert(try #require(current["password"] as? String))
        let firstVersion = try #require(current["version"] as? Int)
        // A 20 s token is refreshed 8-10 s after issue: two rotations within 25 s.
        for _ in 0..<2 {
            let version = try #require(current["version"] as? Int)
            let started = Date()
            let answer = try await agent.request("GET", "/v1/credentials/az-pg?wait=15&version=\(version)", timeout: 20)
            #expect(answer.status == 200)
            #expect(Date().timeIntervalSince(started) < 14)
            current = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])
            #expect(current["version"] as? Int == version + 1)
            let secret = try #require(current["password"] as? String)
            #expect(!secrets.contains(secret))
            secrets.insert(secret)
        }
        #expect(current["version"] as? Int == firstVersion + 2)
        let redis = try await agent.credential("gcp-redis")
        secrets.insert(try #require(redis["password"] as? String))
        #expect(await agent.stop() == 0)
        try await emulator.stop()

        let log = agent.log
        #expect(log.contains("credential obtained"))
        #expect(log.contains("msg=refreshed"))
        for secret in secrets {
            // Neither the whole token nor its signature appears anywhere in the log.
            #expect(!log.contains(secret))
            #expect(!log.contains(String(secret.suffix(40))))
        }
    }

    @Test func identityOutageServesWhileValidThenFailsThenRecovers() async throws {
        let emulator = try await startEmulator(tokenLifetime: 20)
        let agent = try await AgentProcess(label: "agent-outage", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator))
        try await waitUntil("ready", timeout: 10) { try await agent.request("GET", "/v1/ready").status == 200 }
        let first = try await agent.credential("az-pg")
        emulator.inject(.status(500, body: #"{"error":"internal"}"#), at: .azureIMDSToken)

        // The refresh point (8-10 s) passes: refreshes fail, the old token is still served.
        try await waitUntil("az-pg is stale", timeout: 15) { try await agent.state("az-pg") == "stale" }
        let stale = try await agent.credential("az-pg")
        #expect(stale["password"] as? String == first["password"] as? String)

        // 15 s after issue (20 s lifetime minus 5 s) it is no longer served.
        try await waitUntil("az-pg is expired", timeout: 15) { try await agent.state("az-pg") == "expired" }
        let expired = try await agent.request("GET", "/v1/credentials/az-pg")
        #expect(expired.status == 503)
        #expect(expired.headers["Retry-After"] != nil)
        #expect(expired.bodyText.contains(#""code":"unavailable""#))
        #expect(expired.bodyText.contains("500"))
        #expect(try await agent.request("GET", "/v1/ready").status == 503)
        // The other credential is unaffected.
        #expect(try await agent.request("GET", "/v1/credentials/gcp-redis").status == 200)

        emulator.clearFailure(at: .azureIMDSToken)
        try await waitUntil("az-pg recovers", timeout: 10) { try await agent.state("az-pg") == "valid" }
        let recovered = try await agent.credential("az-pg")
        #expect(recovered["password"] as? String != first["password"] as? String)
        #expect(await agent.stop() == 0)
        try await emulator.stop()
        let log = agent.log
        // Each state change is logged once, not every retry.
        #expect(log.components(separatedBy: "refresh failing, serving the current credential").count == 2)
        #expect(log.components(separatedBy: "credential expired and refresh is failing").count == 2)
        #expect(log.contains("credential recovered"))
    }

    @Test func sighupReloadsAndSigtermRemovesTheSocket() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await AgentProcess(label: "agent-reload", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator))
        try await waitUntil("ready", timeout: 10) { try await agent.request("GET", "/v1/ready").status == 200 }
        let kept = try await agent.credential("az-pg")

        // gcp-redis removed, gcp-cache added, az-pg unchanged.
        let reloaded = emulatorOnlyConfig.replacingOccurrences(of: "gcp-redis", with: "gcp-cache")
            .replacingOccurrences(of: "SOCKET", with: agent.socketPath)
        try reloaded.write(toFile: agent.configPath, atomically: true, encoding: .utf8)
        agent.signal(SIGHUP)
        try await waitUntil("gcp-cache is valid", timeout: 10) { try await agent.state("gcp-cache") == "valid" }
        #expect(try await agent.state("gcp-redis") == nil)
        #expect(try await agent.request("GET", "/v1/credentials/gcp-redis").status == 404)
        let after = try await agent.credential("az-pg")
        #expect(after["version"] as? Int == kept["version"] as? Int)
        #expect(after["password"] as? String == kept["password"] as? String)

        // A broken config is rejected and the running one stays.
        try "credentials: [".write(toFile: agent.configPath, atomically: true, encoding: .utf8)
        agent.signal(SIGHUP)
        try await waitUntil("the reload is rejected", timeout: 5) { agent.log.contains("reload rejected") }
        #expect(try await agent.state("gcp-cache") == "valid")
        #expect(agent.isRunning)

        #expect(FileManager.default.fileExists(atPath: agent.socketPath))
        #expect(await agent.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: agent.socketPath))
        #expect(agent.log.contains("msg=stopped"))
        try await emulator.stop()
    }

    @Test func reloadWithNewSettingsKeepsServingTheHeldSecret() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await AgentProcess(label: "agent-reload-settings", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator))
        try await waitUntil("ready", timeout: 10) { try await agent.request("GET", "/v1/ready").status == 200 }
        let azure = try await agent.credential("az-pg")
        let gcp = try await agent.credential("gcp-redis")

        // A new refresh section for both, and an Azure endpoint where nobody listens: az-pg is
        // fetched again at once, fails, and keeps its secret; gcp-redis is only rescheduled.
        let reloaded = emulatorOnlyConfig
            .replacingOccurrences(of: "refresh:\n", with: "azure: {imds_endpoint: \"http://127.0.0.1:9\"}\nrefresh:\n  jitter: 0.05\n")
            .replacingOccurrences(of: "SOCKET", with: agent.socketPath)
        try reloaded.write(toFile: agent.configPath, atomically: true, encoding: .utf8)
        agent.signal(SIGHUP)
        try await waitUntil("the config is reloaded", timeout: 5) { agent.log.contains("config reloaded") }
        for _ in 0..<20 {
            let azureNow = try await agent.credential("az-pg")
            #expect(azureNow["password"] as? String == azure["password"] as? String)
            #expect(azureNow["version"] as? Int == azure["version"] as? Int)
            let gcpNow = try await agent.credential("gcp-redis")
            #expect(gcpNow["password"] as? String == gcp["password"] as? String)
            #expect(gcpNow["version"] as? Int == gcp["version"] as? Int)
        }
        try await waitUntil("az-pg is stale", timeout: 5) { try await agent.state("az-pg") == "stale" }
        #expect(try await agent.state("gcp-redis") == "valid")
        #expect(try await agent.request("GET", "/v1/ready").status == 200)
        // The carried secret is not logged as newly obtained.
        #expect(agent.log.components(separatedBy: "msg=\"credential obtained\" credential=gcp-redis").count == 2)
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func aTricklingRequestHeadIsCutOffAtTheRequestDeadline() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await AgentProcess(label: "agent-trickle", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator))
        // A byte every 0.5 s keeps the connection from ever being idle for the 60 s idle timeout.
        let head = Array("GET /v1/health HTTP/1.1\r\nhost: localhost\r\nx-slow: \(String(repeating: "a", count: 100))\r\n\r\n".utf8)
        let (answer, seconds) = try trickleExchange(agent.socketPath, head, interval: 0.5, limit: 20)
        #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer)")
        #expect(answer.contains("connection: close"))
        #expect(seconds >= 9.5 && seconds < 13, "cut off after \(seconds) s")
        #expect(try await agent.request("GET", "/v1/health").status == 200)
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func connectionLimitsComeFromTheSocketSection() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let config = emulatorOnlyConfig.replacingOccurrences(
            of: "path: SOCKET", with: "path: SOCKET\n  max_connections: 2\n  idle_timeout: 3s")
        let agent = try await AgentProcess(label: "agent-limits", config: config, environment: cloudEnvironment(emulator))
        let first = try SocketConnection(agent.socketPath)
        #expect(first.get("/v1/health") == 200)
        let second = try SocketConnection(agent.socketPath)
        #expect(second.get("/v1/health") == 200)
        // A third connection is closed as it arrives, its request unanswered; the others keep working.
        let third = try SocketConnection(agent.socketPath)
        #expect(third.get("/v1/health", timeout: 2) == nil)
        #expect(first.get("/v1/health") == 200)
        // A request every second keeps a connection open well past the 3 s idle timeout ...
        for _ in 0..<6 {
            sleep(1)
            #expect(second.get("/v1/health") == 200)
        }
        // ... while the one left without a request is closed, which frees its place.
        #expect(first.closedByServer(within: 10))
        #expect(second.closedByServer(within: 10))
        let fourth = try SocketConnection(agent.socketPath)
        #expect(fourth.get("/v1/health") == 200)
        let metrics = try await agent.request("GET", "/metrics")
        #expect(metrics.bodyText.contains("\ncredagent_connections_rejected_total 1\n"), "\(metrics.bodyText)")
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func pipelinedRequestsWaitBehindALongPollInOrder() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await AgentProcess(label: "agent-pipeline", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator))
        try await waitUntil("ready", timeout: 10) { try await agent.request("GET", "/v1/ready").status == 200 }
        let version = try #require(try await agent.credential("az-pg")["version"] as? Int)
        // 100 requests behind a one-second long poll, in one write: queued, then answered in order.
        let requests = "GET /v1/credentials/az-pg?wait=1&version=\(version) HTTP/1.1\r\nhost: x\r\n\r\n"
            + String(repeating: "GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n", count: 100)
        let answers = try rawExchange(agent.socketPath, Array(requests.utf8), timeout: 4)
        #expect(answers.hasPrefix("HTTP/1.1 304"))
        #expect(answers.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 100)
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run a client as nobody"))
    func anotherUserGets403ButMayList() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let config = emulatorAgentConfig(socket: [#"mode: "0666""#])
        let directory = try Peers.scratchDirectory("agent-peer-dir")
        chmod(directory, 0o755)
        let agent = try await AgentProcess(label: "agent-peer", config: config, environment: cloudEnvironment(emulator),
                                           socketDirectory: directory)
        chmod(((agent.directory) as NSString).deletingLastPathComponent, 0o755)
        var info = stat()
        stat(agent.socketPath, &info)
        #expect(info.st_mode & 0o777 == 0o666)
        func asNobody(_ path: String) async throws -> ProcessResult {
            try await ChildProcess.run("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/curl",
                                                            "-s", "-w", "\n%{http_code}", "--unix-socket", agent.socketPath,
                                                            "http://localhost\(path)"], environment: [:])
        }
        let denied = try await asNobody("/v1/credentials/az-pg")
        #expect(denied.stdout.hasSuffix("\n403"))
        #expect(denied.stdout.contains(#""code":"forbidden""#))
        #expect(!denied.stdout.contains("password"))
        let listed = try await asNobody("/v1/credentials")
        #expect(listed.stdout.hasSuffix("\n200"))
        #expect(try await agent.request("GET", "/v1/credentials/az-pg").status == 200)
        #expect(await agent.stop() == 0)
        #expect(agent.log.contains("peer not allowed to read secrets"))
        #expect(agent.log.contains("peer.uid=65534"))
        try await emulator.stop()
    }

    @Test func malformedAndOversizedRequests() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await AgentProcess(label: "agent-bad-http", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator))
        let garbage = try rawExchange(agent.socketPath, Array("NOT HTTP AT ALL\r\n\r\n".utf8))
        #expect(garbage.hasPrefix("HTTP/1.1 400 Bad Request"))
        #expect(garbage.contains(#""code":"bad_request""#))
        let hugeHeader = "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 10_000) + "\r\n\r\n"
        let tooLarge = try rawExchange(agent.socketPath, Array(hugeHeader.utf8))
        #expect(tooLarge.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large"))
        let enormous = "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 100_000) + "\r\n\r\n"
        #expect(try rawExchange(agent.socketPath, Array(enormous.utf8)).hasPrefix("HTTP/1.1 431"))
        // Keep-alive: two requests on one connection, the second closing it.
        let twice = try rawExchange(agent.socketPath, Array(
            "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        #expect(twice.components(separatedBy: "HTTP/1.1 200 OK").count == 3)
        // The agent still serves after all that.
        #expect(try await agent.request("GET", "/v1/health").status == 200)
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func socketFileHandling() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let directory = try Peers.scratchDirectory("agent-socket-files")
        let socketPath = directory + "/agent.sock"

        // A stale socket (nobody listening) is replaced.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: Array(socketPath.utf8))
            buffer[socketPath.utf8.count] = 0
        }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(fd)
        #expect(FileManager.default.fileExists(atPath: socketPath))
        let agent = try await AgentProcess(label: "agent-stale", config: emulatorOnlyConfig,
                                           environment: cloudEnvironment(emulator), socketDirectory: directory)
        #expect(try await agent.request("GET", "/v1/health").status == 200)
        // Bound in a private directory, given its mode, moved into place: the mode is exact
        // whatever the umask, and nothing of the staging is left.
        var socketInfo = stat()
        #expect(lstat(socketPath, &socketInfo) == 0)
        #expect(socketInfo.st_mode & 0o777 == 0o660)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["agent.sock"])

        // A second agent on the same live socket refuses to start.
        let configPath = agent.configPath
        let second = try await runCredagent(["run", "--config", configPath], environment: cloudEnvironment(emulator))
        #expect(second.status == 2)
        #expect(second.stderr.contains("another process is listening"))
        #expect(await agent.stop() == 0)

        // A regular file in the way is never replaced.
        try "not a socket".write(toFile: socketPath, atomically: true, encoding: .utf8)
        let refused = try await runCredagent(["run", "--config", configPath], environment: cloudEnvironment(emulator))
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("exists and is not a socket"))
        #expect(try String(contentsOfFile: socketPath, encoding: .utf8) == "not a socket")

        // A parent directory that cannot be created.
        let nowhere = emulatorOnlyConfig.replacingOccurrences(of: "SOCKET", with: directory + "/missing/deeper/agent.sock")
        try nowhere.write(toFile: configPath, atomically: true, encoding: .utf8)
        let noDirectory = try await runCredagent(["run", "--config", configPath], environment: cloudEnvironment(emulator))
        #expect(noDirectory.status == 2)
        #expect(noDirectory.stderr.contains("missing/deeper: cannot be created"))

        // A missing parent directory is created with mode 0750.
        let created = try await AgentProcess(label: "agent-fresh-dir", config: emulatorOnlyConfig,
                                             environment: cloudEnvironment(emulator), socketDirectory: directory + "/fresh")
        var info = stat()
        stat(directory + "/fresh", &info)
        #expect(info.st_mode & 0o777 == 0o750)
        stat(directory + "/fresh/agent.sock", &info)
        #expect(info.st_mode & 0o777 == 0o660)
        #expect(await created.stop() == 0)
        try await emulator.stop()
    }

    @Test func invalidConfigsAreReportedWithEveryProblem() async throws {
        let directory = try Peers.scratchDirectory("agent-bad-config")
        let notYAML = directory + "/not.yaml"
        try "credentials: [\n  - {name: a".write(toFile: notYAML, atomically: true, encoding: .utf8)
        let check = try await runCredagent(["config", "check", notYAML])
        #expect(check.status == 2)
        #expect(check.stderr.contains("is not valid YAML"))
        let run = try await runCredagent(["run", "--config", notYAML])
        #expect(run.status == 2)
        #expect(run.stderr.contains("is not valid YAML"))

        let duplicates = directory + "/dup.yaml"
        try """
            socket: {mode: "999"}
            credentials:
              - {name: a, kind: redis, provider: gcp, host: 10.0.0.1}
              - {name: a, kind: redis, provider: gcp, host: 10.0.0.2, port: 70000}
            """.write(toFile: duplicates, atomically: true, encoding: .utf8)
        let listed = try await runCredagent(["config", "check", duplicates])
        #expect(listed.status == 2)
        #expect(listed.stderr.contains("3 problems"))
        #expect(listed.stderr.contains("socket.mode: '999' is not an octal permission mode"))
        #expect(listed.stderr.contains("credentials[1].name: 'a' is already used by credentials[0]"))
        #expect(listed.stderr.contains("credentials[1].port: 70000 is not a port (1-65535)"))

        let valid = directory + "/valid.yaml"
        try "credentials:\n  - {name: a, kind: redis, provider: gcp, host: 10.0.0.1}\n"
            .write(toFile: valid, atomically: true, encoding: .utf8)
        let ok = try await runCredagent(["config", "check", valid])
        #expect(ok.status == 0)
        #expect(try await runCredagent(["config", "check", directory + "/absent.yaml"]).status == 2)
    }

    @Test("every shipped example passes `credagent config check`; the demo's needs its environment")
    func examplesPassConfigCheck() async throws {
        let examples = ChildProcess.packageRoot + "/examples"
        let files = try FileManager.default.contentsOfDirectory(atPath: examples).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.contains("local-demo.yaml") && files.count >= 4)
        let demo = ["CREDAGENT_DEMO_DIR": "/tmp/credagent-demo", "CREDAGENT_DEMO_PG_HOST": "localhost",
                    "CREDAGENT_DEMO_PG_PORT": "5432", "CREDAGENT_DEMO_REDIS_HOST": "localhost",
                    "CREDAGENT_DEMO_REDIS_PORT": "6380", "CREDAGENT_DEMO_CA_FILE": "/tmp/ca.pem",
                    "CREDAGENT_DEMO_BAO_ADDR": "http://127.0.0.1:8200"]
        for file in files {
            let check = try await runCredagent(["config", "check", examples + "/" + file], environment: demo)
            #expect(check.status == 0, "\(file): \(check.stderr)")
        }
        let unset = try await runCredagent(["config", "check", examples + "/local-demo.yaml"])
        #expect(unset.status == 2)
        #expect(unset.stderr.contains("socket.path: ${CREDAGENT_DEMO_DIR} is not set; set it, or give a default"))
    }
}
