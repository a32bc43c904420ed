import CloudAuth
import Foundation
import Testing
@testable import CredentialAgent
import CredentialModel

@Suite("The proxy block of a credential")
struct ProxyConfigParserTests {
    /// A credential of `kind` (azure) with `proxyLines` as its proxy block.
    private func config(_ proxyLines: String, kind: String = "postgres") -> String {
        let target = kind == "vault" ? "    method: jwt\n    address: https://vault.internal:8200\n    role: gateway\n    audience: api://vault\n"
                                     : "    host: db.internal\n    user: kong\n"
        var yaml = "credentials:\n  - name: orders-db\n    kind: \(kind)\n    provider: azure\n" + target + "    proxy:\n"
        for line in proxyLines.split(separator: "\n") { yaml += "      \(line)\n" }
        return yaml
    }

    @Test("Every key is read; absent ones take their defaults")
    func everyKey() throws {
        let full = try ConfigParser.parse(yaml: config("""
            listen: unix:/run/credagent/orders-db/
            mode: "0666"
            max_connections: 32
            allow: {uids: [1000], gids: [50]}
            handshake_timeout: 3s
            idle_timeout: 15m
            shutdown_grace: 1m
            """), file: "test.yaml")
        let proxy = try #require(full.credentials.first?.proxy)
        #expect(proxy.listen == .unixDirectory("/run/credagent/orders-db"))
        #expect(proxy.mode == 0o666)
        #expect(proxy.maxConnections == 32)
        #expect(proxy.allowUIDs == [1000])
        #expect(proxy.allowGIDs == [50])
        #expect(proxy.handshakeTimeout == .seconds(3))
        #expect(proxy.idleTimeout == .seconds(900))
        #expect(proxy.shutdownGrace == .seconds(60))

        let minimal = try ConfigParser.parse(yaml: config("listen: unix:/run/db"), file: "test.yaml")
        let defaults = try #require(minimal.credentials.first?.proxy)
        #expect(defaults.mode == 0o660)
        #expect(defaults.maxConnections == 256)
        #expect(defaults.allowUIDs == nil)
        #expect(defaults.handshakeTimeout == .seconds(10))
        #expect(defaults.idleTimeout == nil)
        #expect(defaults.shutdownGrace == .seconds(30))
    }

    @Test("Loopback TCP addresses are taken; any other address is refused")
    func addresses() throws {
        #expect(configIssues(config("listen: 0.0.0.0:15432")).contains { $0.contains("credentials[0].proxy.listen") && $0.contains("is not a loopback address") })
        #expect(configIssues(config("listen: 10.0.0.5:15432")).contains { $0.contains("is not a loopback address") })
        #expect(configIssues(config("listen: \"[::ffff:10.0.0.5]:15432\"")).contains { $0.contains("is not a loopback address") })
        #expect(configIssues(config("listen: 127.0.0.1")).contains { $0.contains("is neither unix:/DIR nor a loopback address with a port") })
        #expect(configIssues(config("listen: 127.0.0.1:70000")).contains { $0.contains("is neither unix:/DIR nor a loopback address with a port") })
        let ipv4 = try ConfigParser.parse(yaml: config("listen: 127.0.0.1:15432"), file: "test.yaml")
        #expect(ipv4.credentials.first?.proxy?.listen == .loopbackTCP(host: "127.0.0.1", port: 15432))
        let ipv6 = try ConfigParser.parse(yaml: config("listen: \"[::1]:15432\""), file: "test.yaml")
        #expect(ipv6.credentials.first?.proxy?.listen == .loopbackTCP(host: "::1", port: 15432))
        #expect(configIssues(config("listen: unix:relative/dir")).contains { $0.contains("does not name an absolute directory") })
    }

    @Test("Bad values name their key")
    func badValues() {
        let found = configIssues(config("""
            listen: unix:/run/db
            mode: "999"
            max_connections: 0
            handshake_timeout: 1h
            idle_timeout: 0s
            color: blue
            """))
        #expect(found.contains { $0.contains("credentials[0].proxy.mode") })
        #expect(found.contains { $0.contains("credentials[0].proxy.max_connections") })
        #expect(found.contains { $0.contains("credentials[0].proxy.handshake_timeout") })
        #expect(found.contains { $0.contains("credentials[0].proxy.idle_timeout") })
        #expect(found.contains { $0.contains("credentials[0].proxy.color") })
        #expect(configIssues(config("mode: \"0660\"")).contains { $0.contains("credentials[0].proxy.listen") })
    }

    @Test("A socket path longer than a Unix socket allows is refused")
    func longPath() {
        let directory = "/run/" + String(repeating: "d", count: 100)
        #expect(configIssues(config("listen: unix:\(directory)")).contains { $0.contains("a Unix socket path may have at most 107") })
    }

    @Test("A redis credential's proxy listens on a socket file or loopback TCP and takes reauth_before")
    func otherKinds() throws {
        let parsed = try ConfigParser.parse(yaml: config("listen: unix:/run/credagent/sessions.sock\nreauth_before: 30m", kind: "redis"),
                                            file: "test.yaml")
        let proxy = try #require(parsed.credentials.first?.proxy)
        #expect(proxy.listen == .unixSocket("/run/credagent/sessions.sock"))
        #expect(proxy.reauthBefore == .seconds(1800))
        let defaults = try ConfigParser.parse(yaml: config("listen: unix:/run/credagent/sessions.sock", kind: "redis"), file: "test.yaml")
        #expect(defaults.credentials.first?.proxy?.reauthBefore == .seconds(11 * 3600))
        #expect(configIssues(config("listen: unix:/run/s.sock\nreauth_before: 0s", kind: "redis"))
            .contains { $0.contains("credentials[0].proxy.reauth_before") })
        #expect(configIssues(config("listen: unix:/run/db\nreauth_before: 1h")).contains { $0.contains("credentials[0].proxy.reauth_before") })
        #expect(configIssues(config("listen: unix:/run/s.sock\nidle_timeout: 1h", kind: "redis")).contains { $0.contains("credentials[0].proxy.idle_timeout") })
        let tcp = try ConfigParser.parse(yaml: config("listen: 127.0.0.1:16379", kind: "redis"), file: "test.yaml")
        #expect(tcp.credentials.first?.proxy?.listen == .loopbackTCP(host: "127.0.0.1", port: 16379))
        #expect(configIssues(config("listen: unix:/run/s.sock\ndeny_paths: [/v1/sys/]", kind: "redis"))
            .contains { $0.contains("credentials[0].proxy.deny_paths") })
    }

    @Test("A vault credential's proxy: a socket file or loopback TCP, require_request_header, deny_paths, idle_timeout")
    func vault() throws {
        let full = try ConfigParser.parse(yaml: config("""
            listen: unix:/run/credagent/vault.sock
            require_request_header: false
            deny_paths: [/v1/sys/, /v1/auth/token/create]
            idle_timeout: 1m
            handshake_timeout: 5s
            max_connections: 64
            """, kind: "vault"), file: "test.yaml")
        let proxy = try #require(full.credentials.first?.proxy)
        #expect(proxy.listen == .unixSocket("/run/credagent/vault.sock"))
        #expect(proxy.requireRequestHeader == false)
        #expect(proxy.denyPaths == ["/v1/sys/", "/v1/auth/token/create"])
        #expect(proxy.idleTimeout == .seconds(60))
        #expect(proxy.handshakeTimeout == .seconds(5))
        #expect(proxy.maxConnections == 64)

        let minimal = try ConfigParser.parse(yaml: config("listen: \"[::1]:18200\"", kind: "vault"), file: "test.yaml")
        let defaults = try #require(minimal.credentials.first?.proxy)
        #expect(defaults.listen == .loopbackTCP(host: "::1", port: 18200))
        #expect(defaults.requireRequestHeader == true)
        #expect(defaults.denyPaths.isEmpty)
        #expect(defaults.idleTimeout == nil)
    }

    @Test("Bad vault proxy values name their key and the fix")
    func vaultBadValues() {
        let found = configIssues(config("""
            listen: unix:/run/credagent/vault.sock
            require_request_header: maybe
            deny_paths: [v1/sys/, "/v1/sys/%6dounts", /v1/ok/]
            reauth_before: 1h
            """, kind: "vault"))
        #expect(found.contains { $0.contains("credentials[0].proxy.require_request_header") && $0.contains("is not true or false") })
        #expect(found.contains { $0.contains("credentials[0].proxy.deny_paths[0]") && $0.contains("like /v1/sys/") })
        #expect(found.contains { $0.contains("credentials[0].proxy.deny_paths[1]") })
        #expect(!found.contains { $0.contains("deny_paths[2]") })
        #expect(found.contains { $0.contains("credentials[0].proxy.reauth_before") })
        #expect(configIssues(config("listen: unix:/run/v.sock\ndeny_paths: /v1/sys/", kind: "vault"))
            .contains { $0.contains("credentials[0].proxy.deny_paths") && $0.contains("must be a list") })
        #expect(configIssues(config("listen: 10.0.0.1:8200", kind: "vault")).contains { $0.contains("is not a loopback address") })
    }
}
