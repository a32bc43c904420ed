import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The Kong vault (integrations/kong) inside real Nginx with the Lua module, against the real
/// agent: `get` called as Kong's PDK calls it, in the content phase (cosocket) and in the init,
/// init_worker and log phases (blocking read), through the harness in integrations/kong/spec.
@Suite(.serialized, .enabled(if: VaultHarness.available, "needs nginx with the Lua module (scripts/bootstrap installs it)"))
struct KongVaultTests {
    /// The references of docs/KONG.md: an Azure Postgres token and a GCP Redis token from the emulator.
    static let agentConfig = """
        socket:
          path: SOCKET
          mode: "0666"
        refresh:
          backoff: {initial: 200ms, max: 1s}
        credentials:
          - name: orders-db
            kind: postgres
            provider: azure
            host: 127.0.0.1
            user: kong
            database: kong
            sslmode: disable
          - name: sessions
            kind: redis
            provider: gcp
            host: 127.0.0.1
            tls: false
        """

    /// An agent whose socket Nginx's worker can reach whichever user it runs as.
    static func startAgent(_ label: String, _ emulator: CloudEmulator) async throws -> AgentProcess {
        let socketDirectory = try Peers.scratchDirectory("\(label)-socket")
        chmod(socketDirectory, 0o755)
        return try await AgentProcess(label: label, config: agentConfig, environment: cloudEnvironment(emulator),
                                      socketDirectory: socketDirectory)
    }

    @Test func getAnswersTheCredentialAndATtlThatEndsAtItsRefreshInEveryPhase() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await Self.startAgent("kong-value", emulator)
        let served = try await agent.credential("orders-db")
        let nginx = try await VaultHarness(label: "kong-value", agentSocket: agent.socketPath,
                                           initResources: ["orders-db", "sessions"])

        // A cap far above the credential's own times: the ttl is the time until its refresh.
        let asked = Date()
        let answer = try await nginx.get("orders-db", ["socket": agent.socketPath, "ttl": "100000"])
        let answered = Date()
        #expect(answer.phase == "content")
        #expect(answer.err == nil)
        let value = try #require(answer.credential)
        #expect(value["password"] as? String == served["password"] as? String)
        #expect(value["version"] as? Int == served["version"] as? Int)
        let times = try CredentialTimes(value)
        // The whole seconds from the moment of the call (between asked and answered) to the refresh.
        let ttl = try #require(answer.ttl)
        #expect(Double(ttl) >= times.refresh.timeIntervalSince(answered).rounded(.down) - 1)
        #expect(Double(ttl) <= times.refresh.timeIntervalSince(asked) + 1)
        #expect(asked.addingTimeInterval(Double(ttl)) <= times.servingEnd)

        // The default cap: 60 s.
        #expect(try await nginx.get("orders-db", ["socket": agent.socketPath]).ttl == 60)
        let redis = try await nginx.get("sessions", ["socket": agent.socketPath])
        #expect(redis.credential?["password"] as? String == (try await agent.credential("sessions"))["password"] as? String)

        // Before any worker ran (init, the master), in each worker's init_worker, and after a
        // response (log): no cosockets there.
        try await nginx.getInLogPhase("orders-db", ["socket": agent.socketPath])
        var early: [String: [String: VaultAnswer]] = [:]
        try await waitUntil("the log phase has called the vault", timeout: 5) {
            early = try await nginx.phaseResults()
            return early["log"]?["orders-db"] != nil
        }
        for phase in ["init", "init_worker", "log"] {
            let orders = try #require(early[phase]?["orders-db"], "\(phase) made no call")
            #expect(orders.phase == phase)
            #expect(orders.credential?["password"] as? String == served["password"] as? String, "\(phase): \(orders.err ?? "")")
            #expect(orders.ttl == 60)
        }
        for phase in ["init", "init_worker"] {
            #expect(early[phase]?["sessions"]?.credential?["kind"] as? String == "redis")
        }

        await nginx.stop()
        #expect(!nginx.errorLog.contains(try #require(served["password"] as? String)))
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func theTtlEndsAtTheRefreshNeverPastTheServingWindowAndIsAtLeastOneSecond() async throws {
        // The rule alone, on given times (no agent): (issued, expires, refresh, now - issued, cap) -> ttl.
        let cases: [(issued: String?, expires: String?, refresh: String?, elapsed: Double, cap: Int, ttl: Int)] = [
            // A 900 s RDS token: until its refresh...
            ("2026-11-22T10:00:00Z", "2026-11-22T10:15:00Z", "2026-11-22T10:09:10Z", 10, 100_000, 540),
            // ... at most the cap ...
            ("2026-11-22T10:00:00Z", "2026-11-22T10:15:00Z", "2026-11-22T10:09:10Z", 10, 60, 60),
            // ... never past 15 s before its expiry, even with a later refresh ...
            ("2026-11-22T10:00:00Z", "2026-11-22T10:15:00Z", "2026-11-22T10:14:55Z", 10, 100_000, 875),
            // ... and 1 s once the refresh is overdue or the window has passed.
            ("2026-11-22T10:00:00Z", "2026-11-22T10:15:00Z", "2026-11-22T10:09:10Z", 600, 100_000, 1),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:15:00Z", nil, 1000, 100_000, 1),
            // A 20 s token is served until a quarter of its lifetime remains.
            ("2026-11-22T10:00:00Z", "2026-11-22T10:00:20Z", nil, 1, 100_000, 14),
            // Fractions of a second; a leap day.
            ("2026-11-22T10:00:00Z", "2026-11-22T10:15:00.500Z", nil, 0.25, 100_000, 885),
            ("2028-02-29T23:59:50Z", "2028-03-01T00:14:50Z", nil, 0, 100_000, 885),
            // No times (a token without expiry): the cap.
            (nil, nil, nil, 0, 60, 60),
        ]
        let nginx = try await VaultHarness(label: "kong-ttl", agentSocket: "/nonexistent/agent.sock", initResources: [])
        let format = ISO8601DateFormatter()
        for rule in cases {
            let issued = format.date(from: rule.issued ?? "2026-11-22T10:00:00Z")!.timeIntervalSince1970
            var query = ["now": String(issued + rule.elapsed), "cap": String(rule.cap)]
            query["issued_at"] = rule.issued
            query["expires_at"] = rule.expires
            query["refresh_at"] = rule.refresh
            let answer = try await nginx.ttlRule(query)
            #expect(answer.ttl == rule.ttl, "\(rule): \(answer.err ?? "")")
        }
        let unreadable = try await nginx.ttlRule(["expires_at": "tomorrow", "now": "0", "cap": "60"])
        #expect(unreadable.ttl == nil)
        #expect(unreadable.err == "an expires_at this vault cannot read")
        await nginx.stop()
    }

    @Test func aRotationIsSeenOnceTheTtlHasPassed() async throws {
        // A 20 s token is refreshed 8-10 s after issue and served until 15 s after issue.
        let emulator = try await startEmulator(tokenLifetime: 20)
        let agent = try await Self.startAgent("kong-rotation", emulator)
        _ = try await agent.credential("orders-db")
        let nginx = try await VaultHarness(label: "kong-rotation", agentSocket: agent.socketPath, initResources: [])
        let options = ["socket": agent.socketPath]

        let asked = Date()
        let first = try await nginx.get("orders-db", options)
        let firstValue = try #require(first.credential, "\(first.err ?? "")")
        let ttl = try #require(first.ttl)
        let firstTimes = try CredentialTimes(firstValue)
        #expect(ttl >= 1)
        #expect(ttl <= 10)
        #expect(asked.addingTimeInterval(Double(ttl)) <= firstTimes.servingEnd)

        // Once the ttl has passed, the agent serves the next version (its refresh takes a moment).
        try await Task.sleep(for: .seconds(Double(ttl)))
        var next = first
        try await waitUntil("a new version after the ttl", timeout: 10) {
            next = try await nginx.get("orders-db", options)
            return next.credential?["version"] as? Int != firstValue["version"] as? Int
        }
        let nextValue = try #require(next.credential)
        #expect(nextValue["version"] as? Int == (firstValue["version"] as? Int ?? 0) + 1)
        #expect(nextValue["password"] as? String != firstValue["password"] as? String)
        let nextTimes = try CredentialTimes(nextValue)
        #expect(Date().addingTimeInterval(Double(try #require(next.ttl)) - 1) <= nextTimes.servingEnd)

        await nginx.stop()
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func theAgentStoppedIsAnErrorAndNginxKeepsServing() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await Self.startAgent("kong-stopped", emulator)
        _ = try await agent.credential("orders-db")
        let nginx = try await VaultHarness(label: "kong-stopped", agentSocket: agent.socketPath, initResources: [])
        let options = ["socket": agent.socketPath]
        // The first call leaves a kept-alive connection in the worker's pool.
        #expect(try await nginx.get("orders-db", options).credential != nil)
        #expect(await agent.stop() == 0)

        for _ in 0..<2 {
            let answer = try await nginx.get("orders-db", options)
            #expect(answer.credential == nil)
            let err = try #require(answer.err)
            #expect(err.contains("no agent answers on \(agent.socketPath)"), "\(err)")
            #expect(err.contains("is credagent running"))
        }
        #expect(nginx.isRunning)
        await nginx.stop()
        #expect(!nginx.errorLog.contains("exited on signal"))
        try await emulator.stop()
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run Nginx's worker as nobody"))
    func aWorkerWhoseUidTheAgentDoesNotAllowGets403() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await Self.startAgent("kong-403", emulator)
        _ = try await agent.credential("orders-db")
        // The master runs as root (the agent's uid: allowed), the worker as nobody (not in socket.allow).
        let nginx = try await VaultHarness(label: "kong-403", agentSocket: agent.socketPath,
                                           initResources: ["orders-db"], user: "nobody", group: "nogroup")
        let answer = try await nginx.get("orders-db", ["socket": agent.socketPath])
        #expect(answer.credential == nil)
        let err = try #require(answer.err)
        #expect(err.contains("does not let uid 65534 read 'orders-db' (403 forbidden)"), "\(err)")
        #expect(err.contains("socket.allow.uids"))
        let early = try await nginx.phaseResults()
        #expect(early["init"]?["orders-db"]?.credential != nil)
        #expect(early["init_worker"]?["orders-db"]?.err?.contains("uid 65534") == true)

        await nginx.stop()
        #expect(await agent.stop() == 0)
        #expect(agent.log.contains("peer.uid=65534"))
        try await emulator.stop()
    }

    @Test func anUnknownNameIs404AndAResourceThatIsNoCredentialNameIsRefusedBeforeAnyIO() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await Self.startAgent("kong-names", emulator)
        let nginx = try await VaultHarness(label: "kong-names", agentSocket: agent.socketPath,
                                           initResources: ["billing-db", "Orders"])
        let unknown = try await nginx.get("billing-db", ["socket": agent.socketPath])
        #expect(unknown.err?.contains("has no credential named 'billing-db' (404 not_found)") == true, "\(unknown.err ?? "")")

        // No socket at this path: an error about the name shows that nothing was tried.
        let nowhere = ["socket": agent.directory + "/no-agent.sock"]
        for resource in ["Orders", "orders db", "orders/db", "-orders", "", String(repeating: "a", count: 64)] {
            let answer = try await nginx.get(resource, nowhere)
            let err = try #require(answer.err, "'\(resource)' was accepted")
            #expect(err.contains("'\(resource)' is not a credential name ([a-z0-9][a-z0-9._-]{0,62})"), "\(err)")
            #expect(err.contains("{vault://credagent/orders-db/password}"))
        }
        let versioned = try await nginx.get("orders-db", nowhere.merging(["version": "2"]) { $1 })
        #expect(versioned.err?.contains("only the current secret of 'orders-db'; remove '#2'") == true)

        let early = try await nginx.phaseResults()
        #expect(early["init"]?["billing-db"]?.err?.contains("404") == true)
        #expect(early["init"]?["Orders"]?.err?.contains("is not a credential name") == true)
        await nginx.stop()
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test func aCredentialWithoutAValidSecretIs503WithTheRetryAfter() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        emulator.inject(.status(500, body: #"{"error":"internal"}"#), at: .azureIMDSToken)
        let agent = try await Self.startAgent("kong-503", emulator)
        let nginx = try await VaultHarness(label: "kong-503", agentSocket: agent.socketPath, initResources: [])
        var answer = try await nginx.get("orders-db", ["socket": agent.socketPath])
        try await waitUntil("the first attempt has failed", timeout: 10) {
            answer = try await nginx.get("orders-db", ["socket": agent.socketPath])
            return answer.err?.contains("state failed") == true
        }
        let err = try #require(answer.err)
        #expect(err.contains("'orders-db' has no servable secret at the moment (503 unavailable:"), "\(err)")
        #expect(err.range(of: #"the agent tries again in \d+ s \(Retry-After\)"#, options: .regularExpression) != nil, "\(err)")
        #expect(answer.credential == nil)
        await nginx.stop()
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run the impostor as nobody"))
    func aServerRunningAsAnotherUserIsRefusedUnlessItIsTheConfiguredServerUid() async throws {
        // Not the agent: a process of another user answering on a socket, as a squatter might.
        let directory = try Peers.scratchDirectory("kong-impostor")
        chmod(directory, 0o777)
        let socket = directory + "/agent.sock"
        let impostor = Process()
        impostor.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        impostor.arguments = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c",
                              Self.impostorServer, socket]
        try impostor.run()
        // SIGKILL: the child inherits the test thread's signal mask, which may block SIGTERM.
        defer { kill(impostor.processIdentifier, SIGKILL); impostor.waitUntilExit() }
        try await waitUntil("the impostor listens", timeout: 10) { FileManager.default.fileExists(atPath: socket) }

        let nginx = try await VaultHarness(label: "kong-impostor", agentSocket: socket, initResources: ["orders-db"])
        let refused = try await nginx.get("orders-db", ["socket": socket])
        #expect(refused.credential == nil)
        #expect(refused.err?.contains("refusing the server on \(socket): its process runs as uid 65534") == true,
                "\(refused.err ?? "")")
        let early = try await nginx.phaseResults()
        for phase in ["init", "init_worker"] {
            #expect(early[phase]?["orders-db"]?.err?.contains("runs as uid 65534") == true, "\(phase)")
        }
        // Declared as the agent's uid, it is believed.
        let accepted = try await nginx.get("orders-db", ["socket": socket, "server_uid": "65534"])
        #expect(accepted.credential?["password"] as? String == "from-uid-65534", "\(accepted.err ?? "")")
        await nginx.stop()
    }

    @Test func anAgentThatDoesNotAnswerIsATimeoutInEveryPhase() async throws {
        // Listening, never accepting: connecting succeeds, no answer ever comes.
        let directory = try Peers.scratchDirectory("kong-silent")
        let socket = directory + "/silent.sock"
        let listener = try listenUnix(socket)
        defer { close(listener) }
        let nginx = try await VaultHarness(label: "kong-silent", agentSocket: socket, initResources: ["orders-db"])
        let started = Date()
        let answer = try await nginx.get("orders-db", ["socket": socket, "timeout": "300"])
        #expect(answer.err?.contains("the agent on \(socket) did not answer within 300 ms") == true, "\(answer.err ?? "")")
        #expect(Date().timeIntervalSince(started) < 5)
        let early = try await nginx.phaseResults()
        #expect(early["init"]?["orders-db"]?.err?.contains("did not answer within 2000 ms") == true,
                "\(early["init"]?["orders-db"]?.err ?? "")")
        await nginx.stop()
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/luarocks"), "needs luarocks (scripts/bootstrap installs it)"))
    func theRockspecInstallsEveryModuleTheVaultLoadsAtItsVersion() async throws {
        let source = ChildProcess.packageRoot + "/integrations/kong"
        let rockspecs = try FileManager.default.contentsOfDirectory(atPath: source).filter { $0.hasSuffix(".rockspec") }
        let rockspec = try #require(rockspecs.first, "no rockspec in integrations/kong")
        #expect(rockspecs.count == 1)
        // kong-vault-credagent-VERSION-1.rockspec, and the vault reports the same VERSION to Kong.
        let version = rockspec.dropFirst("kong-vault-credagent-".count).dropLast("-1.rockspec".count)
        let vaultSource = try String(contentsOfFile: source + "/kong/vaults/credagent/init.lua", encoding: .utf8)
        #expect(vaultSource.contains("local VERSION = \"\(version)\""))

        let tree = try Peers.scratchDirectory("kong-rock")
        let lint = try await ChildProcess.run("/usr/bin/luarocks", ["lint", source + "/" + rockspec])
        #expect(lint.status == 0, "\(lint.stdout)\(lint.stderr)")
        // `luarocks make` reads the modules relative to the directory it runs in.
        let installed = try await ChildProcess.run("/bin/sh", ["-c", "cd \"$0\" && exec luarocks make --tree \"$1\" \"$2\"",
                                                               source, tree, rockspec])
        #expect(installed.status == 0, "\(installed.stdout)\(installed.stderr)")

        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await Self.startAgent("kong-rock", emulator)
        let served = try await agent.credential("orders-db")
        let nginx = try await VaultHarness(label: "kong-rock", agentSocket: agent.socketPath, initResources: ["orders-db"],
                                           vaultPath: tree + "/share/lua/5.1")
        let answer = try await nginx.get("orders-db", ["socket": agent.socketPath])
        #expect(answer.credential?["password"] as? String == served["password"] as? String, "\(answer.err ?? "")")
        #expect(try await nginx.phaseResults()["init"]?["orders-db"]?.credential != nil)
        await nginx.stop()
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    /// A server that answers every request with a fixed credential and the uid it runs as.
    static let impostorServer = """
        import os, socket, sys
        server = socket.socket(socket.AF_UNIX)
        server.bind(sys.argv[1])
        os.chmod(sys.argv[1], 0o666)
        server.listen(16)
        body = b'{"name":"orders-db","password":"from-uid-%d"}' % os.getuid()
        while True:
            connection, _ = server.accept()
            try:
                request = b""
                while b"\\r\\n\\r\\n" not in request:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                connection.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-length: %d\\r\\nconnection: close\\r\\n\\r\\n%s" % (len(body), body))
            except OSError:
                pass
            connection.close()
        """
}

/// What the vault's `get` returned, as the harness reports it.
struct VaultAnswer {
    var value: String?
    var err: String?
    var ttl: Int?
    var phase: String

    init(_ object: [String: Any]) {
        value = object["value"] as? String
        err = object["err"] as? String
        ttl = object["ttl"] as? Int
        phase = object["phase"] as? String ?? ""
    }

    /// The value decoded: the credential's JSON object, as Kong decodes it to pick a field.
    var credential: [String: Any]? {
        value.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
}

/// A credential's times and the end of the window in which the agent serves it.
struct CredentialTimes {
    var refresh: Date
    var servingEnd: Date

    init(_ credential: [String: Any]) throws {
        let format = ISO8601DateFormatter()
        guard let issued = (credential["issued_at"] as? String).flatMap(format.date(from:)),
              let expires = (credential["expires_at"] as? String).flatMap(format.date(from:)),
              let refresh = (credential["refresh_at"] as? String).flatMap(format.date(from:)) else {
            throw TestFailure("the credential lacks its times: \(credential.keys.sorted())")
        }
        self.refresh = refresh
        servingEnd = expires.addingTimeInterval(-min(15, expires.timeIntervalSince(issued) / 4))
    }
}

/// Nginx running integrations/kong/spec/nginx.conf.template: one worker, the vault on its Lua path.
final class VaultHarness: @unchecked Sendable {
    static let nginx = "/usr/sbin/nginx"
    static let luaModule = "/usr/lib/nginx/modules/ngx_http_lua_module.so"
    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: nginx) && FileManager.default.fileExists(atPath: luaModule)
    }

    let directory: String
    let socketPath: String
    private let process = Process()

    /// Starts Nginx, whose init and init_worker phases call the vault for each of `initResources`
    /// on `agentSocket`; its worker runs as `user`. The vault's modules come from `vaultPath`.
    init(label: String, agentSocket: String, initResources: [String], user: String = "root", group: String = "root",
         vaultPath: String = ChildProcess.packageRoot + "/integrations/kong") async throws {
        directory = try Peers.scratchDirectory("\(label)-nginx")
        chmod(directory, 0o755)
        try FileManager.default.createDirectory(atPath: directory + "/temp", withIntermediateDirectories: true)
        socketPath = directory + "/harness.sock"
        let template = try String(contentsOfFile: ChildProcess.packageRoot + "/integrations/kong/spec/nginx.conf.template",
                                  encoding: .utf8)
        let config = [("@PREFIX@", directory), ("@ROOT@", ChildProcess.packageRoot), ("@VAULT_PATH@", vaultPath), ("@USER@", user), ("@GROUP@", group),
                      ("@SOCKET@", agentSocket), ("@INIT_RESOURCES@", initResources.joined(separator: ","))]
            .reduce(template) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
        try config.write(toFile: directory + "/nginx.conf", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: Self.nginx)
        process.arguments = ["-p", directory, "-c", directory + "/nginx.conf", "-e", directory + "/error.log"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try await waitUntil("nginx answers on \(socketPath)", timeout: 30) {
            guard self.process.isRunning else {
                throw TestFailure("nginx exited (status \(self.process.terminationStatus)); its log:\n\(self.errorLog.suffix(2000))")
            }
            return (try? await self.request("/phases"))?.status == 200
        }
    }

    var isRunning: Bool { process.isRunning }
    var errorLog: String { (try? String(contentsOfFile: directory + "/error.log", encoding: .utf8)) ?? "" }

    /// `get(conf, resource, version)` in the content phase; `options` are the vault's fields (and `version`).
    func get(_ resource: String, _ options: [String: String]) async throws -> VaultAnswer {
        VaultAnswer(try decodeObject(try await request("/get?" + Self.query(options.merging(["resource": resource]) { $1 }))))
    }

    private static func query(_ fields: [String: String]) -> String {
        var components = URLComponents()
        components.queryItems = fields.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
        return components.percentEncodedQuery ?? ""
    }

    /// The vault's ttl rule on the times in `query` (issued_at, expires_at, refresh_at, now, cap).
    func ttlRule(_ times: [String: String]) async throws -> VaultAnswer {
        VaultAnswer(try decodeObject(try await request("/ttl?" + Self.query(times))))
    }

    /// `get` in the log phase: nothing to answer there, so ``phaseResults()`` reports it.
    func getInLogPhase(_ resource: String, _ options: [String: String]) async throws {
        _ = try await request("/get-in-log?" + Self.query(options.merging(["resource": resource]) { $1 }))
    }

    /// What the calls in the init, init_worker and log phases returned: phase -> resource -> answer.
    func phaseResults() async throws -> [String: [String: VaultAnswer]] {
        let object = try decodeObject(try await request("/phases"))
        return object.compactMapValues { ($0 as? [String: Any])?.compactMapValues { ($0 as? [String: Any]).map(VaultAnswer.init) } }
    }

    func stop() async {
        if process.isRunning { kill(process.processIdentifier, SIGQUIT) }
        for _ in 0..<100 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    private func request(_ path: String) async throws -> HTTPResponse {
        try await CurlHTTPClient().execute(HTTPRequest(
            method: "GET", url: "http://localhost\(path)", timeouts: HTTPTimeouts(connect: 2, total: 20),
            unixSocketPath: socketPath))
    }

    private func decodeObject(_ response: HTTPResponse) throws -> [String: Any] {
        guard response.status == 200,
              let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw TestFailure("the harness answered \(response.status): \(response.bodyText.prefix(500))\n\(errorLog.suffix(2000))")
        }
        return object
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// A Unix socket listening at `path` that never accepts.
private func listenUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    let bound = withUnixAddress(path) { bind(fd, $0, $1) }
    guard bound == 0, listen(fd, 16) == 0 else {
        close(fd)
        throw TestFailure("cannot listen on \(path): errno \(errno)")
    }
    return fd
}
