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

/// A Vault proxy run in process against the real OpenBao. Its token comes from a real AppRole
/// login whose tokens may use kv `secret/`; a re-login asked for by the proxy logs in again.
final class VaultProxyFixture: Sendable {
    static let kvPolicy = "credagent-proxy-kv"

    let admin: BaoAdmin
    let label: String
    let socketPath: String
    /// The loopback TCP port when the proxy listens there instead of on ``socketPath``.
    let tcpPort: Int?
    let proxy: VaultProxy
    let metrics: AgentMetrics
    /// The CLI's HOME: empty, so no token file or helper of the machine's is used.
    let home: String
    private let current: NIOLockedValueBox<Secret>
    private let logins = NIOLockedValueBox(0)
    private static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// - Parameters:
    ///   - upstream: Vault to relay to; the plain-HTTP OpenBao by default.
    ///   - fixedToken: used as the proxy's token instead of an AppRole login (never replaced).
    init(label: String, requireRequestHeader: Bool = true, denyPaths: [String] = [], handshakeTimeout: Duration = .seconds(10),
         idleTimeout: Duration = .seconds(300), maxConnections: Int = 32, overTCP: Bool = false, mode: UInt32 = 0o660, upstream: VaultUpstream? = nil, fixedToken: Secret? = nil,
         allows: @escaping @Sendable (UnixPeerCredentials) -> Bool = { $0.uid == getuid() }) async throws {
        guard let admin = BaoAdmin.fromEnvironment() else { throw TestFailure("OpenBao is not running") }
        self.admin = admin
        self.label = label
        let directory = try Peers.scratchDirectory(label)
        let socketPath = directory + "/vault.sock"
        self.socketPath = socketPath
        home = directory + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let metrics = AgentMetrics()
        self.metrics = metrics
        let login: (@Sendable () async throws -> Secret)?
        if fixedToken == nil {
            let role = try await admin.makeAppRole(ttl: "10m", maxTTL: "1h")
            try await admin.call("PUT", "sys/policies/acl/\(Self.kvPolicy)",
                                 ["policy": #"path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#])
            try await admin.call("POST", "auth/\(role.mount)/role/gateway", ["token_policies": ["default", Self.kvPolicy]])
            let client = VaultClient(endpoint: VaultEndpoint(address: admin.address), http: CurlHTTPClient())
            login = { try await client.login(mount: role.mount, payload: ["role_id": role.roleID, "secret_id": role.secretID.reveal()]).clientToken }
        } else {
            login = nil
        }
        let first: Secret
        if let login { first = try await login() } else if let fixedToken { first = fixedToken } else { throw TestFailure("no token") }
        logins.withLockedValue { $0 = login == nil ? 0 : 1 }
        let current = NIOLockedValueBox(first)
        self.current = current
        let counter = logins
        let server = try upstream ?? VaultUpstream(address: admin.address)
        let eventLoops = Self.group
        (proxy, tcpPort) = try await startProxy(unix: .unixSocket(socketPath), orLoopbackTCP: overTCP ? "127.0.0.1" : nil) { listener in
            VaultProxy(
                configuration: VaultProxyConfiguration(
                    ProxySettings(credential: label, listener: listener, mode: mode, maxConnections: maxConnections, handshakeTimeout: handshakeTimeout),
                    idleTimeout: idleTimeout, requireRequestHeader: requireRequestHeader, denyPaths: denyPaths, upstream: server),
                token: { current.withLockedValue { $0 } },
                relogin: { _ in
                    guard let login, let fresh = try? await login() else { return nil }
                    counter.withLockedValue { $0 += 1 }
                    current.withLockedValue { $0 = fresh }
                    return fresh
                },
                allows: allows, metrics: metrics.proxy(label), logger: Logger(label: "vault-proxy-test"), group: eventLoops)
        }
    }

    var token: Secret { current.withLockedValue { $0 } }
    var loginCount: Int { logins.withLockedValue { $0 } }

    /// Where clients point `BAO_ADDR`/`VAULT_ADDR`.
    var address: String { tcpPort.map { "http://127.0.0.1:\($0)" } ?? "unix://\(socketPath)" }

    /// The `bao` CLI with the proxy as its Vault and no token of its own.
    func bao(_ arguments: [String]) async throws -> ProcessResult {
        try await ChildProcess.run("/usr/bin/env", ["bao"] + arguments,
                                   environment: ["BAO_ADDR": address, "VAULT_ADDR": address, "HOME": home])
    }

    /// An HTTP request through the proxy with libcurl; `X-Vault-Request: true` unless `headers` say otherwise.
    func request(_ method: String = "GET", _ path: String, headers: CloudAuth.HTTPHeaders = ["X-Vault-Request": "true"],
                 body: [UInt8] = []) async throws -> HTTPResponse {
        try await CurlHTTPClient().execute(HTTPRequest(
            method: method, url: (tcpPort.map { "http://127.0.0.1:\($0)" } ?? "http://localhost") + path, headers: headers, body: body,
            timeouts: HTTPTimeouts(connect: 2, total: 30), maxResponseBytes: 8 << 20, unixSocketPath: tcpPort == nil ? socketPath : nil))
    }

    /// The first message of a Vault-shaped error body.
    static func firstError(_ response: HTTPResponse) -> String {
        let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        return (object?["errors"] as? [String])?.first ?? response.bodyText
    }

    var exposition: String { String(decoding: metrics.exposition([], now: Date()), as: UTF8.self) }

    func stop() async { await proxy.stop(grace: .seconds(1)) }
}

/// A raw connection to a Unix socket for requests no HTTP client would send.
private final class RawConnection {
    private let descriptor: Int32

    init(_ path: String, receiveTimeout seconds: Int = 10) throws {
        descriptor = try connectUnix(path)
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    func send(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private var pending: [UInt8] = []

    /// The responses to requests with `methods`, in order, each framed by its `Content-Length`
    /// (none after a HEAD): each one's head and body, fewer when the connection ends first.
    func readResponses(_ methods: [String]) -> [String] {
        var responses: [String] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while responses.count < methods.count {
            if let end = pending.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
                let lengthLine = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                let length = methods[responses.count] == "HEAD" ? 0
                    : lengthLine.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if pending.count - end.upperBound >= length {
                    responses.append(String(decoding: pending[..<(end.upperBound + length)], as: UTF8.self))
                    pending.removeFirst(end.upperBound + length)
                    continue
                }
            }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            pending.append(contentsOf: buffer[0..<count])
        }
        return responses
    }

    /// Everything until the server closes (or the receive timeout).
    func readToEnd() -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: received, as: UTF8.self)
    }
}

@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultProxyTests {
    private func uniquePath() -> String { "secret/proxy-\(UUID().uuidString.prefix(8).lowercased())" }

    @Test("bao kv put and get through the Unix socket, with no token, as the agent's token")
    func kvRoundTripOverUnixSocket() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-kv")
        try await withCleanup {
            let path = uniquePath(), value = UUID().uuidString
            let put = try await fixture.bao(["kv", "put", path, "value=\(value)"])
            #expect(put.status == 0, "\(put.stdout) \(put.stderr)")
            let get = try await fixture.bao(["kv", "get", "-field=value", path])
            #expect(get.status == 0, "\(get.stderr)")
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == value)
            // Written as the proxy's token: the root token reads what the AppRole token wrote.
            let stored = try await fixture.admin.call("GET", "\(path.replacingOccurrences(of: "secret/", with: "secret/data/"))")
            #expect(((stored["data"] as? [String: Any])?["data"] as? [String: Any])?["value"] as? String == value)
            #expect(fixture.loginCount == 1)
            let metrics = fixture.exposition
            #expect(metrics.contains("credagent_proxy_connections_total{proxy=\"vault-proxy-kv\"}"))
            #expect(metrics.contains("credagent_proxy_upstream_connect_seconds_count{proxy=\"vault-proxy-kv\"}"), "\(metrics)")
            #expect(metrics.contains("credagent_proxy_bytes_total{direction=\"server_to_client\",proxy=\"vault-proxy-kv\"}")
                    || metrics.contains("credagent_proxy_bytes_total{proxy=\"vault-proxy-kv\",direction=\"server_to_client\"}"), "\(metrics)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Over loopback TCP, the CLI works with VAULT_ADDR=http://127.0.0.1:PORT")
    func kvRoundTripOverTCP() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-tcp", overTCP: true)
        try await withCleanup {
            #expect(!FileManager.default.fileExists(atPath: fixture.socketPath), "no socket file for a TCP listener")
            let path = uniquePath(), value = UUID().uuidString
            #expect(try await fixture.bao(["kv", "put", path, "value=\(value)"]).status == 0)
            let get = try await fixture.bao(["kv", "get", "-field=value", path])
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == value, "\(get.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A token revoked in Vault: the proxy logs in again and retries, the client never sees the 403")
    func revokedTokenIsReplaced() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-revoke")
        try await withCleanup {
            let path = uniquePath(), value = UUID().uuidString
            #expect(try await fixture.bao(["kv", "put", path, "value=\(value)"]).status == 0)
            let first = fixture.token
            try await fixture.admin.call("POST", "auth/token/revoke", ["token": first.reveal()])

            let get = try await fixture.bao(["kv", "get", "-field=value", path])
            #expect(get.status == 0, "\(get.stderr)")
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == value)
            #expect(fixture.loginCount == 2)
            #expect(fixture.token != first)

            // Once more at the HTTP level: the status the client reads is Vault's answer to the retry.
            try await fixture.admin.call("POST", "auth/token/revoke", ["token": fixture.token.reveal()])
            let response = try await fixture.request("GET", "/v1/\(path.replacingOccurrences(of: "secret/", with: "secret/data/"))")
            #expect(response.status == 200, "\(response.bodyText)")
            #expect(fixture.loginCount == 3)
            #expect(fixture.exposition.contains("credagent_proxy_reauths_total{proxy=\"vault-proxy-revoke\"} 2"), "\(fixture.exposition)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A 403 that a fresh token does not cure (a path the policy denies) is relayed after one retry")
    func policyDenialIsRelayedAfterOneRetry() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-denied")
        try await withCleanup {
            let response = try await fixture.request("GET", "/v1/sys/mounts")
            #expect(response.status == 403)
            #expect(VaultProxyFixture.firstError(response).contains("permission denied"), "\(response.bodyText)")
            #expect(fixture.loginCount == 2, "exactly one re-login")
            #expect(fixture.exposition.contains("credagent_proxy_auth_failures_total{proxy=\"vault-proxy-denied\"} 1"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Without X-Vault-Request: true a request is refused with 412 in Vault's error shape; with it, served")
    func requestHeaderRequired() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-header")
        try await withCleanup {
            let refused = try await fixture.request("GET", "/v1/auth/token/lookup-self", headers: [:])
            #expect(refused.status == 412)
            #expect(refused.headers["content-type"] == "application/json")
            let message = VaultProxyFixture.firstError(refused)
            #expect(message.contains("credagent proxy for vault-proxy-header") && message.contains("X-Vault-Request"), "\(message)")
            #expect(try await fixture.request("GET", "/v1/auth/token/lookup-self").status == 200)
            #expect(fixture.exposition.contains(
                "credagent_proxy_connections_rejected_total{proxy=\"vault-proxy-header\",reason=\"missing_request_header\"} 1"))

            let relaxed = try await VaultProxyFixture(label: "vault-proxy-noheader", requireRequestHeader: false)
            try await withCleanup { () async throws in
                #expect(try await relaxed.request("GET", "/v1/auth/token/lookup-self", headers: [:]).status == 200)
            } cleanup: {
                await relaxed.stop()
            }
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A client's X-Vault-Token (bogus or root) is replaced: requests run as the agent's token, never shown")
    func clientTokenIsReplaced() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-token")
        try await withCleanup {
            let own = try await VaultClient(endpoint: VaultEndpoint(address: fixture.admin.address), http: CurlHTTPClient())
                .lookupSelf(fixture.token)
            let root = fixture.admin.rootToken.reveal()
            let attempts: [CloudAuth.HTTPHeaders] = [
                ["X-Vault-Request": "true", "X-Vault-Token": "s.bogus"],
                ["X-Vault-Request": "true", "X-Vault-Token": root],
                ["X-Vault-Request": "true", "Authorization": "Bearer \(root)"],
            ]
            for headers in attempts {
                let response = try await fixture.request("GET", "/v1/auth/token/lookup-self", headers: headers)
                #expect(response.status == 200, "\(response.bodyText)")
                let data = try #require((try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["data"] as? [String: Any])
                #expect(data["accessor"] as? String == own.accessor, "the request ran as the agent's token")
                #expect((data["policies"] as? [String])?.contains("root") == false)
                // Vault echoes the caller's token as `id`: the proxy masks it.
                let id = try #require(data["id"] as? String)
                #expect(!id.isEmpty && id.allSatisfy { $0 == "*" }, "\(id)")
                #expect(!response.bodyText.contains(fixture.token.reveal()) && !response.bodyText.contains(root))
            }
            #expect(fixture.loginCount == 1)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test(.enabled(if: getuid() == 0, "needs root to connect as nobody"),
          arguments: [false, true])
    func foreignUIDIsRefused(overTCP: Bool) async throws {
        let label = overTCP ? "vault-proxy-peer-tcp" : "vault-proxy-peer"
        let fixture = try await VaultProxyFixture(label: label, overTCP: overTCP, mode: 0o666)
        try await withCleanup {
            chmod((fixture.socketPath as NSString).deletingLastPathComponent, 0o755)
            let target = overTCP ? ["http://127.0.0.1:\(fixture.tcpPort ?? 0)/v1/auth/token/lookup-self"]
                                 : ["--unix-socket", fixture.socketPath, "http://localhost/v1/auth/token/lookup-self"]
            let result = try await ChildProcess.run("/usr/bin/setpriv", [
                "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/curl", "-s", "-w", "\n%{http_code}",
                "-H", "X-Vault-Request: true",
            ] + target, environment: [:])
            #expect(result.stdout.hasSuffix("\n403"), "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("credagent proxy for \(label): this process (uid 65534) may not use it"), "\(result.stdout)")
            #expect(!result.stdout.contains("accessor"))
            #expect(fixture.exposition.contains("credagent_proxy_connections_rejected_total{proxy=\"\(label)\",reason=\"peer_not_allowed\"} 1"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Smuggling framing, oversize headers and an unfinished body get bounded, clear errors; other sessions go on")
    func badRequestsAreBounded() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-bad", handshakeTimeout: .seconds(2))
        try await withCleanup {
            let head = "POST /v1/secret/data/x HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n"
            let cases: [(request: String, status: String)] = [
                (head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
                (head + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "400"),
                (head + "X-Big: \(String(repeating: "a", count: 100 * 1024))\r\nContent-Length: 0\r\n\r\n", "431"),
            ]
            for (request, status) in cases {
                let connection = try RawConnection(fixture.socketPath)
                connection.send(request)
                let answer = connection.readToEnd()
                #expect(answer.hasPrefix("HTTP/1.1 \(status)"), "\(answer.prefix(300))")
                #expect(answer.contains("credagent proxy for vault-proxy-bad"), "\(answer.prefix(500))")
            }

            // A body that never ends: the connection waits at most handshake_timeout for its next part.
            let stalled = try RawConnection(fixture.socketPath)
            let started = Date()
            stalled.send(head + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\":")
            let path = uniquePath(), value = UUID().uuidString
            #expect(try await fixture.bao(["kv", "put", path, "value=\(value)"]).status == 0, "another session is served meanwhile")
            let answer = stalled.readToEnd()
            let waited = Date().timeIntervalSince(started)
            #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer.prefix(300))")
            #expect(answer.contains("not completed within 2 s"), "\(answer)")
            #expect(waited >= 1.5 && waited < 8 * Peers.timeScale, "\(waited) s")
            let get = try await fixture.bao(["kv", "get", "-field=value", path])
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == value)
            #expect(fixture.exposition.contains("credagent_proxy_connections_rejected_total{proxy=\"vault-proxy-bad\",reason=\"bad_request\"} 3"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("deny_paths prefixes are refused locally however the path is spelled; others pass")
    func denyPaths() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-deny", denyPaths: ["/v1/sys/mounts/"])
        try await withCleanup {
            let listing = try await fixture.bao(["secrets", "list"])
            #expect(listing.status != 0)
            #expect(listing.stderr.contains("/v1/sys/mounts is denied by proxy.deny_paths"), "\(listing.stderr)")
            for spelling in ["/v1/sys/%6dounts", "/v1/secret/../sys/mounts/secret", "//v1/sys//mounts"] {
                let connection = try RawConnection(fixture.socketPath)
                connection.send("GET \(spelling) HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\nConnection: close\r\n\r\n")
                let answer = connection.readToEnd()
                #expect(answer.hasPrefix("HTTP/1.1 403"), "\(spelling): \(answer.prefix(300))")
                #expect(answer.contains("denied by proxy.deny_paths"), "\(spelling)")
            }
            // The kv commands look their mount up under sys/internal/ui/mounts: not denied here.
            let path = uniquePath()
            #expect(try await fixture.bao(["kv", "put", path, "value=1"]).status == 0)
            #expect(fixture.loginCount == 1, "a local refusal is no reason to log in again")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A target with a character HTTP requires percent-encoded is answered 400 at once, not left hanging")
    func unsendableTargetIsRefused() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-target")
        try await withCleanup {
            for target in ["/v1/a{b", "/v1/a}b", "/v1/a|b", "/v1/a^b", "/v1/a\\b", "/v1/a\"b", "/v1/a<b", "/v1/a`b"] {
                let connection = try RawConnection(fixture.socketPath, receiveTimeout: 5)
                let started = Date()
                connection.send("GET \(target) HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n\r\n")
                let answer = connection.readResponses(["GET"]).first ?? ""
                #expect(answer.hasPrefix("HTTP/1.1 400"), "\(target): \(answer.prefix(300))")
                #expect(answer.contains("must be percent-encoded"), "\(target): \(answer)")
                #expect(Date().timeIntervalSince(started) < 4 * Peers.timeScale, "\(target)")
            }
            // Percent-encoded, the same path is Vault's to answer.
            let encoded = try await fixture.request("GET", "/v1/secret/data/a%7Bb")
            #expect(encoded.status == 404, "\(encoded.status) \(encoded.bodyText)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A request asking Vault to wrap its answer is refused: the wrapping token would carry the proxy's token out")
    func wrappingIsRefused() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-wrap")
        try await withCleanup {
            for (name, value) in [("X-Vault-Wrap-TTL", "300"), ("x-vault-wrap-ttl", "5m"), ("X-VAULT-WRAP-FORMAT", "json")] {
                let refused = try await fixture.request("GET", "/v1/auth/token/lookup-self", headers: ["X-Vault-Request": "true", name: value])
                #expect(refused.status == 400, "\(name): \(refused.bodyText)")
                let message = VaultProxyFixture.firstError(refused)
                #expect(message.hasPrefix("credagent proxy for vault-proxy-wrap: ") && message.lowercased().contains(name.lowercased())
                        && message.contains("token"), "\(message)")
                #expect(!refused.bodyText.contains("wrap_info"))
            }
            #expect(try await fixture.request("GET", "/v1/auth/token/lookup-self").status == 200)
            #expect(fixture.loginCount == 1)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A token the proxy used before a rotation is masked too: an old wrapped lookup unwrapped through it shows no token")
    func previousTokenIsMasked() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-previous")
        try await withCleanup {
            let old = fixture.token
            #expect(try await fixture.request("GET", "/v1/auth/token/lookup-self").status == 200)
            // A lookup of the proxy's token, wrapped by Vault: what a client got before wrapping was refused.
            let wrapped = try await CurlHTTPClient().execute(HTTPRequest(
                method: "GET", url: "\(fixture.admin.address)/v1/auth/token/lookup-self",
                headers: ["X-Vault-Token": old.reveal(), "X-Vault-Wrap-TTL": "300"]))
            let wrapInfo = (try JSONSerialization.jsonObject(with: Data(wrapped.body)) as? [String: Any])?["wrap_info"] as? [String: Any]
            let wrappingToken = try #require(wrapInfo?["token"] as? String, "\(wrapped.bodyText)")
            // A path the policy denies: Vault's 403 makes the proxy log in again; the old token stays valid.
            #expect(try await fixture.request("GET", "/v1/sys/mounts").status == 403)
            #expect(fixture.token != old)
            #expect(try await VaultClient(endpoint: VaultEndpoint(address: fixture.admin.address), http: CurlHTTPClient())
                .lookupSelf(old).accessor.isEmpty == false)

            let body = try JSONSerialization.data(withJSONObject: ["token": wrappingToken])
            let unwrapped = try await fixture.request("POST", "/v1/sys/wrapping/unwrap",
                                                      headers: ["X-Vault-Request": "true", "Content-Type": "application/json"],
                                                      body: Array(body))
            #expect(unwrapped.status == 200, "\(unwrapped.bodyText)")
            let data = (try JSONSerialization.jsonObject(with: Data(unwrapped.body)) as? [String: Any])?["data"] as? [String: Any]
            let id = try #require(data?["id"] as? String, "\(unwrapped.bodyText)")
            #expect(id == String(repeating: "*", count: old.reveal().utf8.count), "\(id)")
            #expect(!unwrapped.bodyText.contains(old.reveal()) && !unwrapped.bodyText.contains(fixture.token.reveal()))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("On loopback TCP, requests addressed to another name or made by a web page are refused; a Unix socket takes any Host")
    func rebindingIsRefused() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-rebind", overTCP: true)
        try await withCleanup {
            let port = try #require(fixture.tcpPort)
            for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LocalHost", "127.0.0.1", "127.1.2.3:\(port)", "[::1]:\(port)"] {
                let served = try await fixture.request("GET", "/v1/auth/token/lookup-self", headers: ["X-Vault-Request": "true", "Host": host])
                #expect(served.status == 200, "\(host): \(served.bodyText)")
            }
            for host in ["attacker.example:\(port)", "127.0.0.1.attacker.example:\(port)", "localhost.attacker.example", "[::2]:\(port)"] {
                let refused = try await fixture.request("GET", "/v1/auth/token/lookup-self", headers: ["X-Vault-Request": "true", "Host": host])
                #expect(refused.status == 421, "\(host): \(refused.status) \(refused.bodyText)")
                let message = VaultProxyFixture.firstError(refused)
                #expect(message.hasPrefix("credagent proxy for vault-proxy-rebind: ") && message.contains("not to localhost or a loopback address"),
                        "\(message)")
                #expect(!refused.bodyText.contains("accessor"))
            }
            let browser: [CloudAuth.HTTPHeaders] = [
                ["X-Vault-Request": "true", "Origin": "http://attacker.example:\(port)"],
                ["X-Vault-Request": "true", "Origin": "null"],
                ["X-Vault-Request": "true", "Sec-Fetch-Site": "cross-site"],
                ["X-Vault-Request": "true", "Sec-Fetch-Site": "same-site"],
            ]
            for headers in browser {
                let refused = try await fixture.request("GET", "/v1/auth/token/lookup-self", headers: headers)
                #expect(refused.status == 403, "\(headers): \(refused.status) \(refused.bodyText)")
                #expect(VaultProxyFixture.firstError(refused).contains("web page"), "\(refused.bodyText)")
            }

            let unix = try await VaultProxyFixture(label: "vault-proxy-rebind-unix")
            try await withCleanup { () async throws in
                let served = try await unix.request("GET", "/v1/auth/token/lookup-self",
                                                    headers: ["X-Vault-Request": "true", "Host": "attacker.example", "Sec-Fetch-Site": "cross-site"])
                #expect(served.status == 200, "\(served.bodyText)")
            } cleanup: {
                await unix.stop()
            }
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("auth/token/revoke-self is refused in any namespace and spelling: the token every client shares stays valid")
    func revokeSelfIsRefused() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-revoke-self")
        try await withCleanup {
            let namespace = "proxy-\(UUID().uuidString.prefix(8).lowercased())"
            try await fixture.admin.call("POST", "sys/namespaces/\(namespace)")
            let token = fixture.token
            for path in ["/v1/auth/token/revoke-self", "/v1/auth/token/%72evoke-self", "/v1/secret/../auth/token/revoke-self/",
                         "/v1/\(namespace)/auth/token/revoke-self"] {
                for method in ["POST", "PUT"] {
                    let refused = try await fixture.request(method, path, headers: ["X-Vault-Request": "true", "Content-Type": "application/json"],
                                                            body: Array("{}".utf8))
                    #expect(refused.status == 403, "\(method) \(path): \(refused.status) \(refused.bodyText)")
                    let message = VaultProxyFixture.firstError(refused)
                    #expect(message.hasPrefix("credagent proxy for vault-proxy-revoke-self: ") && message.contains("revoke-self"), "\(message)")
                }
            }
            let lookup = try await VaultClient(endpoint: VaultEndpoint(address: fixture.admin.address), http: CurlHTTPClient()).lookupSelf(token)
            #expect(!lookup.accessor.isEmpty, "the token is still valid")
            #expect(try await fixture.request("GET", "/v1/auth/token/lookup-self").status == 200)
            #expect(fixture.token == token && fixture.loginCount == 1, "no login was needed")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("LIST is not a method the proxy reads: 400 pointing to GET ?list=true, which works")
    func listMethod() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-list")
        try await withCleanup {
            let path = uniquePath()
            #expect(try await fixture.bao(["kv", "put", "\(path)/a", "value=1"]).status == 0)
            let connection = try RawConnection(fixture.socketPath)
            let metadata = path.replacingOccurrences(of: "secret/", with: "secret/metadata/")
            connection.send("LIST /v1/\(metadata) HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n\r\n")
            let answer = connection.readToEnd()
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer.prefix(300))")
            #expect(answer.contains("?list=true"), "\(answer)")
            let listed = try await fixture.request("GET", "/v1/\(metadata)?list=true")
            #expect(listed.status == 200 && listed.bodyText.contains("\"a\""), "\(listed.bodyText)")
            let cli = try await fixture.bao(["kv", "list", path])
            #expect(cli.status == 0 && cli.stdout.contains("a"), "\(cli.stdout) \(cli.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("deny_paths and namespaces: a namespace in the path is listed with it, one in X-Vault-Namespace is denied as is")
    func denyPathsInNamespaces() async throws {
        guard let admin = BaoAdmin.fromEnvironment() else { throw TestFailure("OpenBao is not running") }
        let namespace = "proxy-\(UUID().uuidString.prefix(8).lowercased())"
        try await admin.call("POST", "sys/namespaces/\(namespace)")
        let fixture = try await VaultProxyFixture(label: "vault-proxy-deny-ns", denyPaths: ["/v1/sys/", "/v1/\(namespace)/sys/"])
        try await withCleanup {
            let attempts: [(path: String, headers: CloudAuth.HTTPHeaders)] = [
                ("/v1/\(namespace)/sys/mounts", ["X-Vault-Request": "true"]),
                ("/v1/sys/mounts", ["X-Vault-Request": "true", "X-Vault-Namespace": namespace]),
                ("/v1/\(namespace)/sys/namespaces/child", ["X-Vault-Request": "true"]),
            ]
            for (path, headers) in attempts {
                let refused = try await fixture.request("GET", path, headers: headers)
                #expect(refused.status == 403 && VaultProxyFixture.firstError(refused).contains("denied by proxy.deny_paths"),
                        "\(path) \(headers): \(refused.bodyText)")
            }
            // A secret whose path has a sys segment is the mount's, not denied (the kv commands
            // would look the mount up under the denied sys/: written over HTTP).
            let secret = uniquePath().replacingOccurrences(of: "secret/", with: "/v1/secret/data/") + "/sys/config"
            let written = try await fixture.request("POST", secret, headers: ["X-Vault-Request": "true", "Content-Type": "application/json"],
                                                    body: Array(#"{"data":{"value":"1"}}"#.utf8))
            #expect(written.status == 200, "\(written.bodyText)")
            let read = try await fixture.request("GET", secret)
            #expect(read.status == 200 && read.bodyText.contains(#""value":"1""#), "\(read.bodyText)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("A body over 1 MiB is streamed both ways (and, not held, is not retried after a 403)")
    func largeBodiesStream() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-large")
        try await withCleanup {
            let valueFile = fixture.home + "/value"
            let value = String(repeating: "0123456789abcdef", count: 3 * 65536)  // 3 MiB
            try value.write(toFile: valueFile, atomically: true, encoding: .utf8)
            let path = uniquePath()
            let put = try await fixture.bao(["kv", "put", path, "value=@\(valueFile)"])
            #expect(put.status == 0, "\(put.stderr)")
            let get = try await fixture.bao(["kv", "get", "-field=value", path])
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == value)

            // With the token revoked, the streamed write reaches the client as Vault's 403.
            try await fixture.admin.call("POST", "auth/token/revoke", ["token": fixture.token.reveal()])
            let body = try JSONSerialization.data(withJSONObject: ["data": ["value": value]])
            let refused = try await fixture.request("POST", "/v1/\(path.replacingOccurrences(of: "secret/", with: "secret/data/"))",
                                                    headers: ["X-Vault-Request": "true", "Content-Type": "application/json"],
                                                    body: Array(body))
            #expect(refused.status == 403, "\(refused.bodyText)")
            #expect(fixture.loginCount == 1)
            // The next request, held whole, logs in again and is served.
            #expect(try await fixture.bao(["kv", "get", "-field=value", path]).status == 0)
            #expect(fixture.loginCount == 2)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Over max_connections a client is answered 503 naming the limit; the open connection is served on")
    func tooManyConnections() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-full", maxConnections: 1)
        try await withCleanup {
            let first = try RawConnection(fixture.socketPath)
            let lookup = "GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n\r\n"
            first.send(lookup)
            #expect(first.readResponses(["GET"]).first?.hasPrefix("HTTP/1.1 200") == true)
            let refused = try await fixture.request("GET", "/v1/auth/token/lookup-self")
            #expect(refused.status == 503)
            #expect(VaultProxyFixture.firstError(refused) == "credagent proxy for vault-proxy-full: too many connections (max_connections is 1)")
            first.send(lookup)
            #expect(first.readResponses(["GET"]).first?.hasPrefix("HTTP/1.1 200") == true)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test("Vault down: 502 naming the address and the reason")
    func vaultUnreachable() async throws {
        let down = try RefusingLoopbackPort()
        let address = "http://127.0.0.1:\(down.port)"
        let root = try #require(BaoAdmin.fromEnvironment()).rootToken
        let fixture = try await VaultProxyFixture(label: "vault-proxy-down", upstream: try VaultUpstream(address: address), fixedToken: root)
        try await withCleanup {
            let refused = try await fixture.request("GET", "/v1/auth/token/lookup-self")
            #expect(refused.status == 502)
            let message = VaultProxyFixture.firstError(refused)
            #expect(message.hasPrefix("credagent proxy for vault-proxy-down: cannot connect to Vault at \(address)"), "\(message)")
            #expect(message.lowercased().contains("refused"), "\(message)")
            #expect(fixture.exposition.contains(
                "credagent_proxy_connections_rejected_total{proxy=\"vault-proxy-down\",reason=\"upstream_unreachable\"} 1"))
        } cleanup: {
            await fixture.stop()
            withExtendedLifetime(down) {}
        }
    }

    @Test("Keep-alive: several requests on one connection; at stop an idle connection is closed at once")
    func keepAliveAndStop() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-keepalive")
        let connection = try RawConnection(fixture.socketPath)
        let lookup = "GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n\r\n"
        for _ in 0..<2 {
            connection.send(lookup)
            let answer = connection.readResponses(["GET"]).first ?? ""
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(300))")
            #expect(!answer.lowercased().contains("connection: close"))
        }
        // Pipelined, with a local refusal and a HEAD among them: answered in order.
        connection.send(lookup + "GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: vault\r\n\r\n"
                        + "HEAD /v1/sys/health HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n\r\n" + lookup)
        let answers = connection.readResponses(["GET", "GET", "HEAD", "GET"])
        #expect(answers.map { String($0.prefix(12)) } == ["HTTP/1.1 200", "HTTP/1.1 412", "HTTP/1.1 200", "HTTP/1.1 200"], "\(answers)")
        #expect(answers.last?.contains("\"accessor\"") == true)
        #expect(fixture.exposition.contains("credagent_proxy_connections_total{proxy=\"vault-proxy-keepalive\"} 1"))
        let started = Date()
        await fixture.proxy.stop(grace: .seconds(20))
        #expect(Date().timeIntervalSince(started) < 5 * Peers.timeScale, "the idle connection did not hold the stop for its grace")
        #expect(connection.readToEnd().isEmpty, "closed without a word")
    }

    /// The request timeout runs while a request's parts arrive and the idle timeout between
    /// requests: a connection that asks every second outlives both, one left without a request
    /// is closed about an idle timeout after its last answer.
    @Test("idle_timeout closes a connection with no request for that long; a busy one stays open")
    func idleTimeout() async throws {
        let fixture = try await VaultProxyFixture(label: "vault-proxy-idle", handshakeTimeout: .seconds(1), idleTimeout: .seconds(3))
        let lookup = "GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n\r\n"
        let quiet = try RawConnection(fixture.socketPath)
        quiet.send(lookup)
        #expect(quiet.readResponses(["GET"]).first?.hasPrefix("HTTP/1.1 200") == true)
        let answered = Date()
        #expect(quiet.readToEnd().isEmpty, "closed without a word")
        let idle = Date().timeIntervalSince(answered)
        #expect(idle >= 2.5 && idle < 4.5 * Peers.timeScale, "closed \(idle) s after its answer")
        // The pauses are the kernel's (a blocked thread), not the test pool's, which a loaded
        // machine may wake late: each request comes about a second after the last answer.
        let busy = try RawConnection(fixture.socketPath)
        var lastAnswer = Date()
        for request in 0..<6 {
            let pause = Date().timeIntervalSince(lastAnswer)
            busy.send(lookup)
            let answer = busy.readResponses(["GET"]).first ?? ""
            #expect(answer.hasPrefix("HTTP/1.1 200"), "the busy connection was cut at request \(request), \(pause) s after its last answer")
            lastAnswer = Date()
            usleep(1_000_000)
        }
        await fixture.stop()
    }

    @Test(.enabled(if: Peers.env("CREDAGENT_TEST_BAO_TLS_ADDR") != nil, "needs the TLS OpenBao"))
    func upstreamTLS() async throws {
        let address = try #require(Peers.env("CREDAGENT_TEST_BAO_TLS_ADDR"))
        let caFile = try #require(Peers.env("CREDAGENT_TEST_BAO_TLS_CA_FILE"))
        let root = try #require(BaoAdmin.fromEnvironment()).rootToken
        let trusted = try await VaultProxyFixture(label: "vault-proxy-tls", upstream: try VaultUpstream(address: address, caFile: caFile),
                                                  fixedToken: root)
        try await withCleanup {
            let path = uniquePath(), value = UUID().uuidString
            #expect(try await trusted.bao(["kv", "put", path, "value=\(value)"]).status == 0)
            let get = try await trusted.bao(["kv", "get", "-field=value", path])
            #expect(get.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == value, "\(get.stderr)")

            // The system store does not know OpenBao's dev CA.
            let untrusted = try await VaultProxyFixture(label: "vault-proxy-untrusted", upstream: try VaultUpstream(address: address),
                                                        fixedToken: root)
            try await withCleanup {
                let refused = try await untrusted.request("GET", "/v1/auth/token/lookup-self")
                #expect(refused.status == 502)
                let message = VaultProxyFixture.firstError(refused)
                #expect(message.contains("credagent proxy for vault-proxy-untrusted: cannot connect to Vault at \(address)")
                        && message.contains("not trusted"), "\(message)")
                #expect(!refused.bodyText.contains(root.reveal()))
            } cleanup: {
                await untrusted.stop()
            }
        } cleanup: {
            await trusted.stop()
        }
    }
}

/// The real `credagent run` with a Vault proxy: the agent's own token (a jwt login with the
/// emulator's GCP identity) serves the CLI, and a revoked token is replaced by the agent's refresher.
@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultProxyAgentTests {
    let admin = BaoAdmin.fromEnvironment()!

    @Test func agentProxiesTheCLIAndLogsInAgainWhenItsTokenIsRevoked() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        try await withCleanup {
            let mount = try await admin.mountGCPJWT(emulator, ttl: "10m", maxTTL: "1h")
            let directory = try Peers.scratchDirectory("vault-proxy-agent")
            let socket = directory + "/vault.sock"
            let agent = try await AgentProcess(label: "vault-proxy-agent", config: """
                socket: {path: SOCKET}
                refresh: {client_min_interval: 0s, backoff: {initial: 200ms, max: 1s}}
                \(admin.vaultCredentialsYAML(mount: mount, extra: ["proxy: {listen: \"unix:\(socket)\", deny_paths: [/v1/sys/mounts]}"]))
                """, environment: cloudEnvironment(emulator))
            try await withCleanup {
                let first = try #require(try await agent.credential("vault")["token"] as? String)
                let home = directory + "/home"
                try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
                func bao(_ arguments: [String]) async throws -> ProcessResult {
                    try await ChildProcess.run("/usr/bin/env", ["bao"] + arguments, environment: ["BAO_ADDR": "unix://\(socket)", "HOME": home])
                }

                // The default policy gives every token its cubbyhole and lookup-self.
                #expect(try await bao(["write", "cubbyhole/proxy", "value=through-the-agent"]).status == 0)
                let read = try await bao(["read", "-field=value", "cubbyhole/proxy"])
                #expect(read.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "through-the-agent", "\(read.stderr)")
                let listing = try await bao(["secrets", "list"])
                #expect(listing.status != 0 && listing.stderr.contains("denied by proxy.deny_paths"), "\(listing.stderr)")

                try await admin.call("POST", "auth/token/revoke", ["token": first])
                let lookup = try await bao(["token", "lookup", "-format=json"])
                #expect(lookup.status == 0, "\(lookup.stderr)")
                let second = try #require(try await agent.credential("vault")["token"] as? String)
                #expect(second != first, "the agent logged in again")
                let accessor = try await VaultClient(endpoint: VaultEndpoint(address: admin.address), http: CurlHTTPClient())
                    .lookupSelf(Secret(second)).accessor
                #expect(lookup.stdout.contains(accessor), "the lookup ran as the new token")
                #expect(!lookup.stdout.contains(second), "the token itself is masked")

                let metrics = try await agent.request("GET", "/metrics")
                #expect(metrics.bodyText.contains("credagent_proxy_reauths_total{proxy=\"vault\"} 1"), "\(metrics.bodyText)")
                // `credagent test --via-proxy` looks the token up through the proxy, holding none.
                let viaProxy = try await runCredagent(["test", "vault", "--via-proxy", "--socket", agent.socketPath])
                #expect(viaProxy.status == 0 && viaProxy.stdout.contains("via=unix:\(socket)"), "\(viaProxy.stdout) \(viaProxy.stderr)")
                #expect(!viaProxy.stdout.contains(second))
                #expect(await agent.stop() == 0)
                #expect(!FileManager.default.fileExists(atPath: socket), "the proxy's socket is removed at stop")
                for token in [first, second] { #expect(!agent.log.contains(token), "a Vault token reached the log") }
            } cleanup: {
                _ = await agent.stop()
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }
}

/// A loopback TCP listener playing a server in a test: each accepted connection is handed to
/// `serve` on a thread of its own, which closes it when done.
private final class LoopbackTestServer: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let serve: @Sendable (Int32) -> Void
    private let accepted = NIOLockedValueBox(0)

    /// Connections accepted so far.
    var connections: Int { accepted.withLockedValue { $0 } }

    init(serve: @escaping @Sendable (Int32) -> Void) throws {
        self.serve = serve
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        listener = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw TestFailure("test server cannot listen: errno \(errno)") }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Stops accepting (the accept loop ends on the shut-down listener).
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            accepted.withLockedValue { $0 += 1 }
            Thread { [serve] in serve(client) }.start()
        }
    }
}

/// A loopback TCP forwarder to Vault that plays Vault closing an idle keep-alive connection just
/// as the next request goes out: on each connection it relays the first request and its answer,
/// then closes both sides, unanswered, as soon as the client sends anything more.
private final class IdleClosingForwarder: Sendable {
    private let server: LoopbackTestServer

    var port: Int { server.port }
    /// Connections accepted so far: one per upstream connection the proxy opened.
    var connections: Int { server.connections }

    init(to address: String) throws {
        guard let url = URL(string: address), let host = url.host, let port = url.port else {
            throw TestFailure("not a host:port address: \(address)")
        }
        server = try LoopbackTestServer { client in Self.relay(client, to: (host, port)) }
    }

    func stop() { server.stop() }

    private static func relay(_ client: Int32, to target: (host: String, port: Int)) {
        defer { close(client) }
        guard let server = try? connectTCP(host: target.host, port: target.port) else { return }
        defer { close(server) }
        var answered = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: server, events: Int16(POLLIN), revents: 0)]
        while poll(&fds, 2, 30_000) > 0 {
            for index in 0..<2 where fds[index].revents != 0 {
                let from = fds[index].fd, to = index == 0 ? server : client
                let count = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
                if count <= 0 { return }
                if index == 0, answered { return }  // the next request: "Vault" closes, unanswered
                if index == 1 { answered = true }
                _ = buffer.withUnsafeBytes { send(to, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    private static func connectTCP(host: String, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { close(fd); throw TestFailure("forwarder cannot reach \(host):\(port)") }
        return fd
    }
}

/// A server that answers each connection's first request with `response` (the bytes as sent)
/// and closes, keeping the request heads it received.
private final class CannedUpstream: Sendable {
    private let server: LoopbackTestServer
    private let heads: NIOLockedValueBox<[String]>

    var address: String { "http://127.0.0.1:\(server.port)" }
    /// The heads received, each as sent.
    var requestHeads: [String] { heads.withLockedValue { $0 } }

    init(answering response: [UInt8]) throws {
        let heads = NIOLockedValueBox<[String]>([])
        self.heads = heads
        server = try LoopbackTestServer { client in
            defer { close(client) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while received.firstRange(of: Array("\r\n\r\n".utf8)) == nil {
                let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                if count <= 0 { return }
                received += buffer[0..<count]
            }
            heads.withLockedValue { $0.append(String(decoding: received, as: UTF8.self)) }
            _ = response.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }

    func stop() { server.stop() }
}

@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultProxyCodingTests {
    @Test("An answer in a content coding is refused with 502 (the token could not be masked in it); Vault is asked for identity")
    func codedAnswerIsRefused() async throws {
        // {"data":{"id":"s.canned-upstream-token"}}, gzipped: the token inside is not there to be found.
        let gzipped: [UInt8] = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0x4a, 0x49, 0x2c, 0x49, 0x54, 0xb2, 0xaa, 0x56,
            0xca, 0x4c, 0x51, 0xb2, 0x52, 0x2a, 0xd6, 0x4b, 0x4e, 0xcc, 0xcb, 0x4b, 0x4d, 0xd1, 0x2d, 0x2d, 0x28, 0x2e, 0x29, 0x4a,
            0x4d, 0xcc, 0xd5, 0x2d, 0xc9, 0xcf, 0x4e, 0xcd, 0x53, 0xaa, 0xad, 0x05, 0x00, 0x2a, 0x39, 0x93, 0x03, 0x29, 0x00, 0x00, 0x00,
        ]
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: \(gzipped.count)\r\n\r\n"
        let upstream = try CannedUpstream(answering: Array(head.utf8) + gzipped)
        let fixture = try await VaultProxyFixture(label: "vault-proxy-gzip", upstream: try VaultUpstream(address: upstream.address),
                                                  fixedToken: Secret("s.canned-upstream-token"))
        try await withCleanup {
            let refused = try await fixture.request("GET", "/v1/auth/token/lookup-self",
                                                    headers: ["X-Vault-Request": "true", "Accept-Encoding": "gzip, deflate"])
            #expect(refused.status == 502, "\(refused.status) \(refused.headers) \(refused.bodyText)")
            let message = VaultProxyFixture.firstError(refused)
            #expect(message.hasPrefix("credagent proxy for vault-proxy-gzip: ") && message.contains("gzip"), "\(message)")
            #expect(refused.headers["content-encoding"] == nil)
            let sent = upstream.requestHeads.first?.lowercased() ?? ""
            #expect(sent.contains("\r\naccept-encoding: identity\r\n") && !sent.contains("gzip"), "\(sent)")
            #expect(fixture.exposition.contains(
                "credagent_proxy_connections_rejected_total{proxy=\"vault-proxy-gzip\",reason=\"upstream_protocol\"} 1"), "\(fixture.exposition)")
        } cleanup: {
            await fixture.stop()
            upstream.stop()
        }
    }
}

@Suite(.enabled(if: BaoAdmin.available, "needs OpenBao: run scripts/test"))
struct VaultProxyResendTests {
    @Test("Vault closes a reused connection as a read goes out: the read is sent again on a new one; a write is not")
    func readIsResentWhenAReusedConnectionCloses() async throws {
        let admin = try #require(BaoAdmin.fromEnvironment())
        let forwarder = try IdleClosingForwarder(to: admin.address)
        let fixture = try await VaultProxyFixture(label: "vault-proxy-resend",
                                                  upstream: try VaultUpstream(address: "http://127.0.0.1:\(forwarder.port)"))
        try await withCleanup {
            let connection = try RawConnection(fixture.socketPath)
            let lookup = "GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n\r\n"
            connection.send(lookup)
            #expect(connection.readResponses(["GET"]).first?.hasPrefix("HTTP/1.1 200") == true)
            #expect(forwarder.connections == 1)

            // The reused upstream connection is closed under the read: it is sent again, once.
            connection.send(lookup)
            let resent = connection.readResponses(["GET"]).first ?? ""
            #expect(resent.hasPrefix("HTTP/1.1 200"), "\(resent.prefix(300))")
            #expect(resent.contains("\"accessor\""))
            #expect(forwarder.connections == 2)

            // A write may have been done before the connection ended: never sent twice, 502 instead.
            connection.send("POST /v1/auth/token/lookup-self HTTP/1.1\r\nHost: vault\r\nX-Vault-Request: true\r\n"
                            + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            let refused = connection.readResponses(["POST"]).first ?? ""
            #expect(refused.hasPrefix("HTTP/1.1 502"), "\(refused.prefix(300))")
            #expect(refused.contains("credagent proxy for vault-proxy-resend"), "\(refused.prefix(300))")
            #expect(!refused.contains(fixture.token.reveal()))
            #expect(forwarder.connections == 2, "the write was sent again")
        } cleanup: {
            await fixture.stop()
            forwarder.stop()
        }
    }
}
