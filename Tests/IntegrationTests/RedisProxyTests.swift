import AuthProxy
import CloudAuth
import CloudEmulator
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

/// A Redis proxy run in process against the real Redis (over its TLS port, or its plain one when
/// asked), the ACL user's password playing the cloud's token: the test sets it and hands it to the proxy.
final class RedisProxyFixture: Sendable {
    let label: String
    let user: String
    let socketPath: String
    /// The loopback TCP port when the proxy listens there instead of on ``socketPath``.
    let tcpPort: Int?
    let proxy: RedisProxy
    let metrics: AgentMetrics
    private let token: NIOLockedValueBox<Secret>
    /// Whether the proxy's credential closure has a token to give.
    private let hasToken = NIOLockedValueBox(true)
    private static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    init(label: String, reauthBefore: Duration = .seconds(3600), reauthRetryDelay: Duration = .seconds(1), mode: UInt32 = 0o660, caFile: String? = RedisPeer.caFile,
         host: String = RedisPeer.host, overTCP: Bool = false, plainUpstream: Bool = false,
         allows: @escaping @Sendable (UnixPeerCredentials) -> Bool = { $0.uid == getuid() }) async throws {
        self.label = label
        let user = uniqueUser("proxy")
        self.user = user
        let token = fakeIAMToken()
        try await RedisPeer.createUser(user, password: token)
        self.token = NIOLockedValueBox(token)
        let socketPath = try Peers.scratchDirectory(label) + "/redis.sock"
        self.socketPath = socketPath
        let metrics = AgentMetrics()
        self.metrics = metrics
        let box = self.token, hasToken = self.hasToken
        let eventLoops = Self.group
        (proxy, tcpPort) = try await startProxy(unix: .unixSocket(socketPath), orLoopbackTCP: overTCP ? "127.0.0.1" : nil) { listener in
            RedisProxy(
                configuration: RedisProxyConfiguration(
                    ProxySettings(credential: label, listener: listener, mode: mode, maxConnections: 64),
                    reauthBefore: reauthBefore, reauthRetryDelay: reauthRetryDelay,
                    upstream: plainUpstream ? ProxyUpstream(host: host, port: RedisPeer.port, tls: .disable)
                        : ProxyUpstream(host: host, port: RedisPeer.tlsPort, tls: .verifyFull, caFile: caFile)),
                credential: {
                    guard hasToken.withLockedValue({ $0 }) else { return nil }
                    return ExpiringProxyCredential(credential: ProxyCredential(username: user, password: box.withLockedValue { $0 }), expiresAt: nil)
                },
                allows: allows, metrics: metrics.proxy(label), logger: Logger(label: "redis-proxy-test"), group: eventLoops)
        }
    }

    /// The token the proxy logs in with.
    var currentToken: Secret { token.withLockedValue { $0 } }

    /// Hands the proxy `token`, which the server may not know yet (a rotation the cloud has not
    /// propagated yet).
    func handProxy(_ token: Secret) {
        self.token.withLockedValue { $0 = token }
    }

    /// Has the proxy's credential give no token (as before the agent's first one) or give it again.
    func withholdToken(_ withheld: Bool) {
        hasToken.withLockedValue { $0 = !withheld }
    }

    /// Adds `token` to the user's passwords on the server, keeping the others.
    func addServerPassword(_ token: Secret) async throws {
        _ = try await RedisPeer.admin("ACL SETUSER \(user) >\(token.reveal())", masking: token)
    }

    /// Removes `token` from the user's passwords on the server, keeping the others.
    func removeServerPassword(_ token: Secret) async throws {
        _ = try await RedisPeer.admin("ACL SETUSER \(user) <\(token.reveal())", masking: token)
    }

    /// redis-cli on the proxy's socket or port, without a password.
    func cli(_ arguments: [String], prefix: [String] = []) async throws -> ProcessResult {
        let all = (tcpPort.map { ["-h", "127.0.0.1", "-p", String($0)] } ?? ["-s", socketPath]) + arguments
        guard let program = prefix.first else { return try await ChildProcess.run("/usr/bin/redis-cli", all, environment: [:]) }
        return try await ChildProcess.run(program, Array(prefix.dropFirst()) + ["/usr/bin/redis-cli"] + all, environment: [:])
    }

    var exposition: String { String(decoding: metrics.exposition([], now: Date()), as: UTF8.self) }

    /// The value of this proxy's counter `name` (with the label `direction` or `reason` when
    /// given); -1 when the exposition has none.
    func counter(_ name: String, direction: String? = nil, reason: String? = nil) -> Int {
        let extra = direction.map { ",direction=\"\($0)\"" } ?? reason.map { ",reason=\"\($0)\"" } ?? ""
        let prefix = "\(name){proxy=\"\(label)\"\(extra)} "
        return exposition.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) } ?? -1
    }

    func stop() async { await proxy.stop(grace: .seconds(1)) }
}

extension RedisPeer {
    /// Runs `command` as the admin (redis-cli on stdin, the admin password in its environment) and
    /// returns its output; `masking` is hidden in any error.
    static func admin(_ command: String, masking secret: Secret? = nil) async throws -> String {
        let passwordFile = Peers.env("CREDAGENT_TEST_REDIS_ADMIN_PASSWORD_FILE") ?? ""
        let adminPassword = try String(contentsOfFile: passwordFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let result = try await ChildProcess.run(
            "/usr/bin/redis-cli", ["-h", "127.0.0.1", "-p", String(port), "--no-auth-warning"],
            environment: ["REDISCLI_AUTH": adminPassword], stdin: Data((command + "\n").utf8))
        guard result.status == 0 else {
            let text = result.stderr
            throw TestFailure("admin command failed: \(secret.map { text.replacingOccurrences(of: $0.reveal(), with: "<redacted>") } ?? text)")
        }
        return result.stdout
    }
}

/// A blocking Unix socket client that speaks raw RESP, for pipelining and for watching where a
/// connection ends. One thread writes and another reads at most (a socket allows that).
final class RawRedisConnection: @unchecked Sendable {
    fileprivate let descriptor: Int32

    init(path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            let bytes = Array(path.utf8)
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw TestFailure("cannot connect to \(path)") }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    func send(_ commands: [[String]]) {
        var bytes: [UInt8] = []
        for command in commands {
            bytes += Array("*\(command.count)\r\n".utf8)
            for argument in command { bytes += Array("$\(argument.utf8.count)\r\n\(argument)\r\n".utf8) }
        }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard written > 0 else { return }
            offset += written
        }
    }

    /// Reads until `count` complete replies arrived (or the connection ended): the replies, and
    /// the bytes after the last complete one. The blocking reads run on a thread of their own:
    /// tests run side by side on the cooperative pool, whose few threads one blocked read would
    /// take from every other test.
    func replies(_ count: Int) async -> (replies: [String], rest: [UInt8], closed: Bool) {
        await Self.offThePool { self.blockingReplies(count) }
    }

    private func blockingReplies(_ count: Int) -> (replies: [String], rest: [UInt8], closed: Bool) {
        var received: [UInt8] = []
        var replies: [String] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var closed = false
        while replies.count < count {
            while let (reply, length) = Self.parse(received), replies.count < count {
                replies.append(reply)
                received.removeFirst(length)
            }
            if replies.count == count { break }
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n <= 0 {
                closed = true
                break
            }
            received += chunk[0..<n]
        }
        return (replies, received, closed)
    }

    /// Whether the server closes the connection (within the read timeout) without sending anything.
    func readsEndOfFile() async -> (closed: Bool, bytes: [UInt8]) {
        await Self.offThePool { self.blockingReadToEnd() }
    }

    /// Runs `body` on a new thread and returns its result.
    private static func offThePool<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    private func blockingReadToEnd() -> (closed: Bool, bytes: [UInt8]) {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            // A close with bytes of ours unread is a reset.
            if n == 0 || (n < 0 && errno == ECONNRESET) { return (true, received) }
            if n < 0 { return (false, received) }
            received += chunk[0..<n]
        }
    }

    /// One reply at the start of `bytes` as text (arrays, pushes and maps joined by spaces), and
    /// its length.
    static func parse(_ bytes: [UInt8]) -> (String, Int)? {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")), newline > 0 else { return nil }
        let line = String(decoding: bytes[1..<(newline - 1)], as: UTF8.self)
        switch bytes[0] {
        case UInt8(ascii: "$"):
            guard let length = Int(line) else { return nil }
            if length < 0 { return ("(nil)", newline + 1) }
            guard bytes.count >= newline + 1 + length + 2 else { return nil }
            return (String(decoding: bytes[(newline + 1)..<(newline + 1 + length)], as: UTF8.self), newline + 1 + length + 2)
        case UInt8(ascii: "*"), UInt8(ascii: ">"), UInt8(ascii: "%"):
            guard let count = Int(line) else { return nil }
            var offset = newline + 1
            var parts: [String] = []
            for _ in 0..<max(count, 0) * (bytes[0] == UInt8(ascii: "%") ? 2 : 1) {
                guard let (part, length) = parse(Array(bytes[offset...])) else { return nil }
                parts.append(part)
                offset += length
            }
            return (parts.joined(separator: " "), offset)
        default:
            return (String(decoding: bytes[0..<(newline - 1)], as: UTF8.self), newline + 1)
        }
    }
}

@Suite("Redis proxy against the real server", .enabled(if: RedisPeer.available, "needs scripts/peers/redis"), .serialized)
struct RedisProxyTests {
    @Test("redis-cli works through the proxy with no password, as the credential's user, over TLS")
    func redisCLI() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-cli")
        try await withCleanup {
            let whoami = try await fixture.cli(["ACL", "WHOAMI"])
            #expect(whoami.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == fixture.user, "\(whoami.stdout) \(whoami.stderr)")
            let set = try await fixture.cli(["SET", "proxied-\(fixture.user)", "value 1"])
            #expect(set.stdout.contains("OK"))
            let get = try await fixture.cli(["GET", "proxied-\(fixture.user)"])
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "value 1")
            // The client's own credentials are answered locally: still the credential's user.
            let own = try await fixture.cli(["--user", "someone", "--pass", "guess", "--no-auth-warning", "ACL", "WHOAMI"])
            #expect(own.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == fixture.user, "\(own.stdout) \(own.stderr)")
            // HELLO 3 (RESP3) with AUTH: the AUTH part is dropped, the map reply reaches the client.
            let hello = try await fixture.cli(["-3", "HELLO", "3", "AUTH", "someone", "guess", "SETNAME", "proxied-app"])
            #expect(hello.stdout.contains("proto"), "\(hello.stdout) \(hello.stderr)")
            #expect(fixture.exposition.contains("credagent_proxy_connections_total{proxy=\"redis-proxy-cli\"} 5"), "\(fixture.exposition)")

            // In a pipeline the local answer to AUTH keeps its place; RESET (which logs the connection
            // out) is followed by a fresh AUTH; SELECT and CLIENT SETNAME pass through.
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["PING"], ["AUTH", "someone", "guess"], ["ECHO", "after"], ["RESET"], ["ACL", "WHOAMI"],
                             ["SELECT", "1"], ["CLIENT", "SETNAME", "proxied"], ["CLIENT", "GETNAME"], ["AUTH"]])
            let replies = await connection.replies(9).replies
            #expect(replies == ["+PONG", "+OK", "after", "+RESET", fixture.user, "+OK", "+OK", "proxied",
                                "-ERR wrong number of arguments for 'auth' command"], "\(replies)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("redis-benchmark runs through the proxy: every request answered")
    func redisBenchmark() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-bench")
        try await withCleanup {
            let plain = try await ChildProcess.run("/usr/bin/redis-benchmark", ["-s", fixture.socketPath, "-n", "5000", "-c", "10", "-t", "set,get", "-q"],
                                                   environment: [:])
            #expect(plain.status == 0, "\(plain.stderr)")
            #expect(plain.stdout.contains("SET:") && plain.stdout.contains("GET:"), "\(plain.stdout) \(plain.stderr)")
            let pipelined = try await ChildProcess.run("/usr/bin/redis-benchmark",
                                                       ["-s", fixture.socketPath, "-n", "20000", "-c", "10", "-P", "16", "-t", "set,get", "-q"],
                                                       environment: [:])
            #expect(pipelined.status == 0, "\(pipelined.stderr)")
            #expect(pipelined.stdout.contains("GET:"), "\(pipelined.stdout) \(pipelined.stderr)")
            #expect(!fixture.exposition.contains("credagent_proxy_connections_rejected_total{proxy=\"redis-proxy-bench\""), "\(fixture.exposition)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("An open connection re-authenticates with the rotated token between replies; the server sees each AUTH")
    func reauthAcrossRotation() async throws {
        // A refused re-AUTH is tried again after 5 s: time enough for the test's admin command
        // that teaches the server the token, however loaded the machine.
        let fixture = try await RedisProxyFixture(label: "redis-proxy-reauth", reauthBefore: .seconds(2), reauthRetryDelay: .seconds(5))
        try await withCleanup {
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["ACL", "WHOAMI"]])
            #expect(await connection.replies(1).replies == [fixture.user])

            // A rotation as the clouds make one: the server takes the new token before the proxy
            // has it and forgets the old one after, so every re-AUTH meanwhile is accepted. Once the
            // old token is gone, a re-AUTH succeeds only with the new one.
            let old = fixture.currentToken, rotated = fakeIAMToken()
            try await fixture.addServerPassword(rotated)
            fixture.handProxy(rotated)
            try await fixture.removeServerPassword(old)
            let reauthsAtRotation = fixture.counter("credagent_proxy_reauths_total")
            try await waitUntil("the connection authenticates again after the old token is gone", timeout: 10) {
                fixture.counter("credagent_proxy_reauths_total") > reauthsAtRotation
            }
            connection.send([["ACL", "WHOAMI"], ["PING"]])
            let after = await connection.replies(2)
            #expect(after.replies == [fixture.user, "+PONG"], "\(after)")
            #expect(fixture.counter("credagent_proxy_auth_failures_total") == 0, "\(fixture.exposition)")
            #expect(fixture.counter("credagent_proxy_forced_reconnects_total") == 0)

            // A token the server learns a moment after the proxy has it: the refused re-AUTH leaves
            // the connection logged in as before, is tried again after the retry delay, and succeeds.
            let early = fakeIAMToken()
            let reauthsBeforeEarly = fixture.counter("credagent_proxy_reauths_total")
            fixture.handProxy(early)
            try await waitUntil("a re-AUTH with the early token is refused", timeout: 10) {
                fixture.counter("credagent_proxy_auth_failures_total") >= 1
            }
            try await fixture.addServerPassword(early)
            let earlyFailures = fixture.counter("credagent_proxy_auth_failures_total")
            #expect(earlyFailures == 1, "\(fixture.exposition)")
            try await waitUntil("the retried re-AUTH succeeds", timeout: 15) {
                fixture.counter("credagent_proxy_reauths_total") > reauthsBeforeEarly
            }
            connection.send([["PING"]])
            #expect(await connection.replies(1).replies == ["+PONG"], "the connection carried on")

            // The server changes the password behind the proxy's back: the next re-AUTHs reach the
            // server (its ACL LOG records the refused AUTH for this user), and after the retry is
            // refused too the connection is closed at a reply boundary rather than kept on a token
            // the server no longer takes.
            _ = try await RedisPeer.admin("ACL SETUSER \(fixture.user) resetpass >\(fakeIAMToken().reveal())")
            let end = await connection.readsEndOfFile()
            #expect(end.closed && end.bytes.isEmpty, "\(end)")
            let log = try await RedisPeer.admin("ACL LOG 20")
            #expect(log.contains(fixture.user) && log.contains("auth"), "\(log)")
            #expect(fixture.counter("credagent_proxy_auth_failures_total") == earlyFailures + 2, "\(fixture.exposition)")
            #expect(fixture.counter("credagent_proxy_forced_reconnects_total") == 1)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("10,000 pipelined commands across re-auth points get exactly their 10,000 replies, in order")
    func pipeliningAcrossReauth() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-pipeline", reauthBefore: .seconds(1))
        try await withCleanup {
            let key = "counter-\(fixture.user)"
            let connection = try RawRedisConnection(path: fixture.socketPath)
            // 20 batches of 500, 150 ms apart: the 1 s re-auth point falls inside the stream.
            for _ in 0..<20 {
                connection.send(Array(repeating: ["INCR", key], count: 500))
                try await Task.sleep(for: .milliseconds(150))
            }
            let result = await connection.replies(10_000)
            #expect(result.replies.count == 10_000)
            #expect(result.replies == (1...10_000).map { ":\($0)" })
            connection.send([["PING"]])
            #expect(await connection.replies(1).replies == ["+PONG"])
            let exposition = fixture.exposition
            #expect(!exposition.contains("credagent_proxy_reauths_total{proxy=\"redis-proxy-pipeline\"} 0"), "\(exposition)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A transaction left open across the re-auth point is closed at a reply boundary; nothing of it is applied")
    func transactionClosedAtBoundary() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-multi", reauthBefore: .seconds(2))
        try await withCleanup {
            let key = "multi-\(fixture.user)"
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["MULTI"], ["SET", key, "1"]])
            #expect(await connection.replies(2).replies == ["+OK", "+QUEUED"])
            // Due after 2 s; the transaction gets a quarter of that (0.5 s) to end, then the connection is closed.
            let end = await connection.readsEndOfFile()
            #expect(end.closed && end.bytes.isEmpty, "\(end)")
            #expect(try await RedisPeer.admin("GET \(key)").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
            #expect(fixture.exposition.contains("credagent_proxy_forced_reconnects_total{proxy=\"redis-proxy-multi\"} 1"))

            // A transaction that ends before the re-auth point runs whole, and the re-auth follows it.
            let second = try RawRedisConnection(path: fixture.socketPath)
            second.send([["MULTI"], ["SET", key, "2"], ["EXEC"]])
            #expect(await second.replies(3).replies == ["+OK", "+QUEUED", "+OK"])
            try await waitUntil("the connection authenticates again", timeout: 10) {
                fixture.counter("credagent_proxy_reauths_total") >= 1
            }
            second.send([["GET", key]])
            #expect(await second.replies(1).replies == ["2"])
            #expect(fixture.counter("credagent_proxy_forced_reconnects_total") == 1, "\(fixture.exposition)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A subscriber is closed at a message boundary at the re-auth point: every message it got is whole")
    func subscriberClosedAtBoundary() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-sub", reauthBefore: .seconds(2))
        try await withCleanup {
            let channel = "news-\(fixture.user)"
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["SUBSCRIBE", channel]])
            #expect(await connection.replies(1).replies == ["subscribe \(channel) :1"])
            let payload = String(repeating: "x", count: 200_000)
            // The publisher stops between its commands (a redis-cli cut short could leave a
            // message half sent) once the subscriber's connection has closed.
            let done = NIOLockedValueBox(false)
            async let published: Void = {
                for _ in 0..<40 {
                    if done.withLockedValue({ $0 }) { break }
                    _ = try? await RedisPeer.admin("PUBLISH \(channel) \(payload)")
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }()
            let received = await connection.replies(1000)
            done.withLockedValue { $0 = true }
            await published
            #expect(received.closed)
            #expect(received.rest.isEmpty, "a partial message of \(received.rest.count) bytes")
            #expect(received.replies.count >= 1)
            #expect(received.replies.allSatisfy { $0 == "message \(channel) \(payload)" })
            #expect(fixture.exposition.contains("credagent_proxy_forced_reconnects_total{proxy=\"redis-proxy-sub\"} 1"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A process whose uid is not allowed is refused with an error naming the credential")
    func peerNotAllowed() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-peer", mode: 0o666)
        try await withCleanup {
            chmod((fixture.socketPath as NSString).deletingLastPathComponent, 0o755)
            let result = try await fixture.cli(["PING"], prefix: ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            #expect(result.stdout.contains("credagent proxy for redis-proxy-peer: this process (uid 65534) may not use it"),
                    "\(result.stdout) \(result.stderr)")
            #expect(fixture.exposition.contains("credagent_proxy_connections_rejected_total{proxy=\"redis-proxy-peer\",reason=\"peer_not_allowed\"} 1"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Over loopback TCP, redis-cli works with no password; a process of another uid is refused by its socket's owner")
    func loopbackTCP() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-tcp", overTCP: true)
        try await withCleanup {
            #expect(!FileManager.default.fileExists(atPath: fixture.socketPath), "no socket file for a TCP listener")
            let whoami = try await fixture.cli(["ACL", "WHOAMI"])
            #expect(whoami.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == fixture.user, "\(whoami.stdout) \(whoami.stderr)")
            let foreign = try await fixture.cli(["PING"], prefix: ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            #expect(foreign.stdout.contains("credagent proxy for redis-proxy-tcp: this process (uid 65534) may not use it"),
                    "\(foreign.stdout) \(foreign.stderr)")
            #expect(!foreign.stdout.contains("PONG"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A server certificate the CA file does not trust, or that does not name the host, is refused with the reason")
    func upstreamTLSChecked() async throws {
        let untrusted = try await RedisProxyFixture(label: "redis-proxy-ca", caFile: RedisPeer.otherCAFile)
        try await withCleanup {
            let refused = try await untrusted.cli(["PING"])
            #expect(refused.stdout.contains("credagent proxy for redis-proxy-ca: cannot connect to the database")
                    && refused.stdout.contains("not trusted"), "\(refused.stdout) \(refused.stderr)")
            #expect(untrusted.exposition.contains("credagent_proxy_connections_rejected_total{proxy=\"redis-proxy-ca\",reason=\"upstream_unreachable\"} 1"))
            // The test certificate names localhost and 127.0.0.1, not the name 127.1 (which resolves to 127.0.0.1).
            let misnamed = try await RedisProxyFixture(label: "redis-proxy-name", host: "127.1")
            try await withCleanup {
                let wrongName = try await misnamed.cli(["PING"])
                #expect(wrongName.stdout.contains("does not name '127.1'"), "\(wrongName.stdout) \(wrongName.stderr)")
            } cleanup: {
                await misnamed.stop()
            }
        } cleanup: {
            await untrusted.stop()
        }
    }

    @Test("A bulk length of 2^40 from a client is a protocol error for that client only")
    func hugeBulkLength() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-bad")
        try await withCleanup {
            let bad = try RawRedisConnection(path: fixture.socketPath)
            let good = try RawRedisConnection(path: fixture.socketPath)
            good.send([["PING"]])
            #expect(await good.replies(1).replies == ["+PONG"])
            bad.send([["PING"]])
            _ = await bad.replies(1)
            bad.sendRaw("*2\r\n$3\r\nGET\r\n$1099511627776\r\n")
            let answer = await bad.replies(1)
            #expect(answer.replies == ["-ERR Protocol error: invalid bulk length"], "\(answer)")
            #expect(await bad.readsEndOfFile().closed)
            good.send([["PING"]])
            #expect(await good.replies(1).replies == ["+PONG"])

            // An inline command that never ends is cut at 64 KB.
            let unterminated = try RawRedisConnection(path: fixture.socketPath)
            unterminated.sendRaw(String(repeating: "a", count: 70_000))
            #expect(await unterminated.replies(1).replies == ["-ERR Protocol error: too big inline request"])
            #expect(await unterminated.readsEndOfFile().closed)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A client that stops reading stalls only itself, and later gets every reply whole and in order")
    func slowReader() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-slow")
        try await withCleanup {
            let key = "big-\(fixture.user)"
            let value = String(repeating: "v", count: 100_000)
            let slow = try RawRedisConnection(path: fixture.socketPath)
            slow.send([["SET", key, value]])
            #expect(await slow.replies(1).replies == ["+OK"])
            // 200 replies of 100 KB (20 MB) requested, none read yet.
            let writer = Task.detached { slow.send(Array(repeating: ["GET", key], count: 200) + [["ECHO", "last"]]) }
            try await Task.sleep(for: .seconds(1))
            let other = try RawRedisConnection(path: fixture.socketPath)
            other.send([["PING"]])
            #expect(await other.replies(1).replies == ["+PONG"])
            let result = await slow.replies(201)
            await writer.value
            #expect(result.replies.count == 201)
            #expect(result.replies.dropLast().allSatisfy { $0 == value })
            #expect(result.replies.last == "last")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("UNSUBSCRIBE, PUNSUBSCRIBE and SUNSUBSCRIBE outside subscribe mode (pushes only in RESP3, one reply per channel in RESP2) close the connection at the re-auth point; no injected reply reaches the client")
    func unsubscribeOutsideSubscribeMode() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-unsub", reauthBefore: .seconds(2))
        try await withCleanup {
            let resp3 = try RawRedisConnection(path: fixture.socketPath)
            resp3.send([["HELLO", "3"]])
            #expect(await resp3.replies(1).replies.first?.contains("proto :3") == true)
            resp3.send([["UNSUBSCRIBE"], ["PUNSUBSCRIBE", "p"], ["SUNSUBSCRIBE"]])
            #expect(await resp3.replies(3).replies == ["unsubscribe _ :0", "punsubscribe p :0", "sunsubscribe _ :0"])
            let resp2 = try RawRedisConnection(path: fixture.socketPath)
            resp2.send([["UNSUBSCRIBE", "a", "b"], ["PING"]])
            #expect(await resp2.replies(3).replies == ["unsubscribe a :0", "unsubscribe b :0", "+PONG"])
            // At the re-auth point each is closed, not sent an AUTH whose +OK it would read.
            for connection in [resp3, resp2] {
                let end = await connection.readsEndOfFile()
                #expect(end.closed && end.bytes.isEmpty, "\(end)")
            }
            #expect(fixture.counter("credagent_proxy_forced_reconnects_total") == 2, "\(fixture.exposition)")
            #expect(fixture.counter("credagent_proxy_auth_failures_total") == 0)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("AUTH with a password alone or a user and password is answered +OK; other counts get Redis' errors")
    func authArity() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-arity")
        try await withCleanup {
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["AUTH", "guess"], ["AUTH", "someone", "guess"], ["AUTH", "a", "b", "c"], ["AUTH"], ["ACL", "WHOAMI"]])
            let replies = await connection.replies(5).replies
            #expect(replies == ["+OK", "+OK", "-ERR syntax error", "-ERR wrong number of arguments for 'auth' command", fixture.user], "\(replies)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A refused token or a missing one reaches the client as the documented error, not as a bare close")
    func refusalsReachTheClient() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-refused")
        try await withCleanup {
            _ = try await RedisPeer.admin("ACL SETUSER \(fixture.user) off")
            let rejected = try await fixture.cli(["PING"])
            #expect(rejected.stdout.contains("credagent proxy for redis-proxy-refused: the database rejected the credential's token: WRONGPASS"),
                    "\(rejected.stdout) \(rejected.stderr)")
            #expect(fixture.counter("credagent_proxy_connections_rejected_total", reason: "token_rejected") == 1, "\(fixture.exposition)")
            fixture.withholdToken(true)
            let missing = try await fixture.cli(["PING"])
            #expect(missing.stdout.contains("credagent proxy for redis-proxy-refused: the credential has no valid token yet"),
                    "\(missing.stdout) \(missing.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("XREAD ... BLOCK is seen as blocking after any number of options: the connection is closed after the grace, not re-authenticated behind it")
    func blockingStreamReadAfterManyOptions() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-xread", reauthBefore: .seconds(2))
        try await withCleanup {
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["XREAD", "COUNT", "1", "COUNT", "1", "COUNT", "1", "COUNT", "1", "BLOCK", "0", "STREAMS", "s-\(fixture.user)", "$"]])
            let end = await connection.readsEndOfFile()
            #expect(end.closed && end.bytes.isEmpty, "\(end)")
            #expect(fixture.counter("credagent_proxy_forced_reconnects_total") == 1, "\(fixture.exposition)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Inline commands with quotes, NUL or whitespace other than spaces and tabs are refused, not misread; the connection carries on")
    func inlineCommandsRedisWouldReadOtherwise() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-inline")
        try await withCleanup {
            let connection = try RawRedisConnection(path: fixture.socketPath)
            // Redis reads "RESET" and \vRESET as RESET (which logs the connection out) and 'AUTH'
            // as AUTH (which would reach the server).
            connection.sendRaw("\"RESET\"\r\n\u{0B}RESET\r\n'AUTH' someone guess\r\nPING\r\n")
            connection.send([["ACL", "WHOAMI"]])
            let replies = await connection.replies(5).replies
            #expect(replies.count == 5, "\(replies)")
            for refused in replies.prefix(3) {
                #expect(refused.hasPrefix("-ERR credagent proxy for redis-proxy-inline: ") && refused.contains("RESP array"), "\(refused)")
            }
            #expect(Array(replies.suffix(2)) == ["+PONG", fixture.user], "\(replies)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A client that sends a whole pipeline before reading any reply (as redis-py does) gets every reply")
    func pipelineWrittenBeforeReading() async throws {
        // Over plain TCP: Redis 7.0 over TLS drops a connection whose socket fills (a write retried
        // shorter fails with "SSL routines::bad length"), whoever its client.
        let fixture = try await RedisProxyFixture(label: "redis-proxy-batch", plainUpstream: true)
        try await withCleanup {
            let key = "batch-\(fixture.user)"
            let value = String(repeating: "v", count: 100)
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["SET", key, value]])
            #expect(await connection.replies(1).replies == ["+OK"])
            // 9 MB of requests, far more than the sockets hold, for 21 MB of replies: the server
            // keeps reading requests while the client reads nothing yet.
            let get = "*2\r\n$3\r\nGET\r\n$\(key.utf8.count)\r\n\(key)\r\n"
            let batch = Array(String(repeating: get, count: 200_000).utf8)
            let written = await connection.flood(batch, total: batch.count, stall: 10)
            #expect(written == batch.count, "the proxy stopped reading a pipeline after \(written) bytes")
            let reply = "$\(value.utf8.count)\r\n\(value)\r\n"
            let expected = Array(String(repeating: reply, count: written / get.utf8.count).utf8)
            let received = await connection.receive(expected.count)
            #expect(received.count == expected.count)
            #expect(firstDifference(received, expected) == nil)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A client that floods AUTH and never reads: the proxy stops reading it, holds a bounded amount, and answers every AUTH once it reads; others carry on")
    func floodingClientThatNeverReads() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-flood")
        try await withCleanup {
            let chunk = Array(String(repeating: "AUTH a b\r\n", count: 6_000).utf8)
            let flooding = try RawRedisConnection(path: fixture.socketPath)
            let written = await flooding.flood(chunk, total: 16 * 1024 * 1024, stall: 3)
            // Kernel socket buffers and the proxy's watermark: a megabyte or so. Without
            // backpressure the proxy reads all 16 MB, each AUTH's answer held for the client.
            #expect(written < 4 * 1024 * 1024, "the proxy read \(written) bytes from a client that reads nothing")
            #expect(fixture.counter("credagent_proxy_bytes_total", direction: "client_to_server") < 4 * 1024 * 1024, "\(fixture.exposition)")
            let other = try RawRedisConnection(path: fixture.socketPath)
            other.send([["PING"]])
            #expect(await other.replies(1).replies == ["+PONG"])
            // Once the client reads, it gets one +OK per whole AUTH it sent.
            let expected = Array(String(repeating: "+OK\r\n", count: written / 10).utf8)
            let answers = await flooding.receive(expected.count)
            #expect(answers.count == expected.count)
            #expect(firstDifference(answers, expected) == nil)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("After a protocol error whose answer waits behind a blocking command, the proxy reads nothing more of the client")
    func protocolErrorBehindABlockingCommand() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-broken")
        try await withCleanup {
            let key = "broken-\(fixture.user)"
            let broken = try RawRedisConnection(path: fixture.socketPath)
            broken.send([["BLPOP", key, "0"]])
            broken.sendRaw("*abc\r\n")
            let written = await broken.flood(Array(String(repeating: "PING\r\n", count: 10_000).utf8), total: 16 * 1024 * 1024, stall: 3)
            #expect(written < 4 * 1024 * 1024, "the proxy read \(written) bytes after a protocol error")
            _ = try await RedisPeer.admin("LPUSH \(key) v")
            let answer = await broken.replies(2)
            #expect(answer.replies == ["\(key) v", "-ERR Protocol error: invalid multibulk length"], "\(answer.replies)")
            #expect(await broken.readsEndOfFile().closed)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Local answers behind a blocking command are bounded: the proxy stops reading the client until they can be written")
    func localAnswersBehindABlockingCommand() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-queue")
        try await withCleanup {
            let key = "queue-\(fixture.user)"
            let blocked = try RawRedisConnection(path: fixture.socketPath)
            blocked.send([["BLPOP", key, "0"]])
            let chunk = Array(String(repeating: "AUTH a b\r\n", count: 6_000).utf8)
            let written = await blocked.flood(chunk, total: 16 * 1024 * 1024, stall: 3)
            #expect(written < 4 * 1024 * 1024, "the proxy read \(written) bytes it could not answer yet")
            let other = try RawRedisConnection(path: fixture.socketPath)
            other.send([["PING"]])
            #expect(await other.replies(1).replies == ["+PONG"])
            // The blocking command's reply, then every AUTH's answer in order.
            _ = try await RedisPeer.admin("LPUSH \(key) v")
            let popped = "*2\r\n$\(key.utf8.count)\r\n\(key)\r\n$1\r\nv\r\n"
            let expected = Array((popped + String(repeating: "+OK\r\n", count: written / 10)).utf8)
            let received = await blocked.receive(expected.count)
            #expect(received.count == expected.count)
            #expect(firstDifference(received, expected) == nil)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("AUTH inside MULTI is queued like any command; HELLO's options are read as Redis reads them")
    func authInTransactionAndHelloOptions() async throws {
        let fixture = try await RedisProxyFixture(label: "redis-proxy-hello")
        try await withCleanup {
            let key = "tx-\(fixture.user)"
            let connection = try RawRedisConnection(path: fixture.socketPath)
            connection.send([["MULTI"], ["AUTH", "someone", "guess"], ["SET", key, "1"], ["EXEC"], ["ACL", "WHOAMI"]])
            #expect(await connection.replies(5).replies == ["+OK", "+QUEUED", "+QUEUED", "+OK +OK", fixture.user])
            // A wrong AUTH in a transaction aborts it, as Redis would.
            connection.send([["MULTI"], ["AUTH"], ["SET", key, "2"], ["EXEC"], ["GET", key]])
            let aborted = await connection.replies(5).replies
            #expect(aborted.count == 5 && aborted[1] == "-ERR wrong number of arguments for 'auth' command"
                    && aborted[3].hasPrefix("-EXECABORT") && aborted[4] == "1", "\(aborted)")
            connection.send([["MULTI"], ["AUTH", "a", "b", "c"], ["EXEC"]])
            #expect(await connection.replies(3).replies == ["+OK", "+QUEUED", "-ERR syntax error"])
            // With no token to queue in its place, the connection is closed and the server
            // discards the transaction: nothing after the AUTH reaches it.
            let tokenless = try RawRedisConnection(path: fixture.socketPath)
            tokenless.send([["PING"]])
            #expect(await tokenless.replies(1).replies == ["+PONG"])
            fixture.withholdToken(true)
            tokenless.send([["MULTI"], ["SET", key, "3"], ["AUTH", "someone", "guess"], ["EXEC"]])
            let refused = await tokenless.replies(4)
            #expect(Array(refused.replies.prefix(2)) == ["+OK", "+QUEUED"] && refused.replies.count == 3 && refused.closed
                    && refused.replies[2].hasPrefix("-ERR credagent proxy for redis-proxy-hello: the credential has no valid token yet"),
                    "\(refused)")
            #expect(try await RedisPeer.admin("GET \(key)").trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            fixture.withholdToken(false)
            // SETNAME's value may be the word auth; AUTH needs a user and a password.
            connection.send([["HELLO", "2", "SETNAME", "auth"], ["CLIENT", "GETNAME"], ["HELLO", "2", "AUTH", "onlyuser"]])
            let hello = await connection.replies(3).replies
            #expect(hello.count == 3 && hello[0].contains("proto :2") && hello[1] == "auth"
                    && hello[2] == "-ERR Syntax error in HELLO option 'AUTH'", "\(hello)")
        } cleanup: {
            await fixture.stop()
        }
    }
}

/// Where `received` first differs from `expected` and the bytes there, or nil when they are equal
/// (a test's expectation on megabytes compares without diffing them).
private func firstDifference(_ received: [UInt8], _ expected: [UInt8]) -> String? {
    guard received != expected else { return nil }
    let index = zip(received, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(received.count, expected.count)
    func excerpt(_ bytes: [UInt8]) -> String { String(decoding: bytes[index..<min(bytes.count, index + 40)], as: UTF8.self).debugDescription }
    return "at byte \(index) of \(expected.count): \(excerpt(received)) instead of \(excerpt(expected))"
}

extension RawRedisConnection {
    func sendRaw(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }

    /// Writes `chunk` over and over, never reading, until `total` bytes are written or one write
    /// waits `stall` seconds (the proxy stopped reading); returns the bytes written.
    func flood(_ chunk: [UInt8], total: Int, stall: Int) async -> Int {
        await Self.offThePool {
            var timeout = timeval(tv_sec: stall, tv_usec: 0)
            setsockopt(self.descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var written = 0
            while written < total {
                let offset = written % chunk.count
                let count = chunk[offset...].withUnsafeBytes { write(self.descriptor, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                written += count
            }
            return written
        }
    }

    /// The next `count` bytes (fewer when the connection ends or a read times out).
    func receive(_ count: Int) async -> [UInt8] {
        await Self.offThePool {
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while received.count < count {
                let n = chunk.withUnsafeMutableBytes { read(self.descriptor, $0.baseAddress, min($0.count, count - received.count)) }
                guard n > 0 else { break }
                received += chunk[0..<n]
            }
            return received
        }
    }
}

/// The agent as a process with a `proxy:` block on a redis credential: redis-cli connects with no
/// password, and a connection left open re-authenticates with the token of the agent's rotation.
@Suite(.enabled(if: RedisPeer.available, "needs the redis peer (run scripts/test)"))
struct AgentRedisProxyTests {
    @Test("An agent's Redis proxy serves redis-cli without a password and re-authenticates open connections after a rotation")
    func agentRedisProxy() async throws {
        let user = uniqueUser("cache")
        let socket = try Peers.scratchDirectory("agent-redis-proxy") + "/proxy/sessions.sock"
        let fixture = try await EmulatedAgent(label: "agent-redis-proxy", config: agentConfig(credentials: RedisPeer.credential(
            "sessions", user: user, more: ["proxy:", "  listen: unix:\(socket)", "  reauth_before: 10s", "  shutdown_grace: 5s"])))
        let agent = fixture.agent
        try await withCleanup {
            let first = try await agent.credential("sessions")
            try await RedisPeer.createUser(user, password: Secret(first["password"] as? String ?? ""))

            let whoami = try await ChildProcess.run("/usr/bin/redis-cli", ["-s", socket, "ACL", "WHOAMI"], environment: [:])
            #expect(whoami.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == user, "\(whoami.stdout) \(whoami.stderr)")

            // Logged in now, the open connection authenticates again 10 s later: by then the
            // rotation below has reached the server, however loaded the machine.
            let open = try RawRedisConnection(path: socket)
            open.send([["PING"]])
            #expect(await open.replies(1).replies == ["+PONG"])
            var second: [String: Any] = [:]
            try await waitUntil("the agent holds version 2", timeout: 30) {
                second = try await agent.json("POST", "/v1/credentials/sessions/refresh").body
                return second["version"] as? Int == 2
            }
            let newToken = Secret(second["password"] as? String ?? "")
            _ = try await RedisPeer.admin("ACL SETUSER \(user) resetpass >\(newToken.reveal())", masking: newToken)
            var metrics = ""
            try await waitUntil("the open connection authenticates again", timeout: 30) {
                metrics = String(decoding: try await agent.request("GET", "/metrics").body, as: UTF8.self)
                return !metrics.contains("credagent_proxy_reauths_total{proxy=\"sessions\"} 0")
            }
            open.send([["ACL", "WHOAMI"]])
            #expect(await open.replies(1).replies == [user])
            #expect(metrics.contains("credagent_proxy_auth_failures_total{proxy=\"sessions\"} 0"), "\(metrics)")
            #expect(metrics.contains("credagent_proxy_forced_reconnects_total{proxy=\"sessions\"} 0"), "\(metrics)")
            // `credagent test --via-proxy` sends PING through the proxy's socket, with no secret.
            let viaProxy = try await runCredagent(["test", "sessions", "--via-proxy", "--socket", agent.socketPath])
            #expect(viaProxy.status == 0 && viaProxy.stdout.contains(socket), "\(viaProxy.stdout) \(viaProxy.stderr)")

            #expect(FileManager.default.fileExists(atPath: socket))
            #expect(await agent.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: socket))
        } cleanup: {
            await fixture.stop()
        }
    }
}
