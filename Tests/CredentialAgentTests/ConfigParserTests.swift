import CloudAuth
import CredentialModel
import Foundation
import Testing
@testable import CredentialAgent

/// The issues a config produces, as `path: message` lines.
func configIssues(_ yaml: String) -> [String] {
    do {
        _ = try ConfigParser.parse(yaml: yaml, file: "test.yaml")
        return []
    } catch let error as ConfigError {
        return error.issues.map(\.description)
    } catch {
        return ["unexpected \(error)"]
    }
}

private func parse(_ yaml: String) throws -> AgentConfig {
    try ConfigParser.parse(yaml: yaml, file: "test.yaml")
}

private let rdsCredential = """
      - name: orders-db
        kind: postgres
        provider: aws
        host: orders.abc.us-east-1.rds.amazonaws.com
        port: 5432
        user: kong
    """

@Suite struct ConfigParserTests {
    @Test func fullExampleParses() throws {
        let config = try parse("""
            socket:
              path: /run/credagent/agent.sock
              mode: "0660"
              allow:
                uids: [1000]
                gids: [1000, 1001]
            refresh:
              min_remaining: 5m
              lifetime_fraction: 0.5
              jitter: 0.2
              backoff: {initial: 500ms, max: 2m}
            aws: {region: us-east-1, assume_role_arn: null, sts_endpoint: "http://127.0.0.1:5000", imds_endpoint: null}
            azure: {client_id: abc, tenant_id: null, imds_endpoint: null}
            gcp: {service_account: default, key_file: null, metadata_host: "127.0.0.1:8080"}
            credentials:
              - name: orders-db
                kind: postgres
                provider: aws
                host: orders.abc.us-east-1.rds.amazonaws.com
                port: 5432
                user: kong
                database: kong
                sslmode: verify-full
                ca_file: null
              - name: sessions
                kind: redis
                provider: aws
                cache_name: sessions-cache
                serverless: true
                user: kong
                host: master.sessions-cache.abc.use1.cache.amazonaws.com
                port: 6379
                tls: true
              - name: vault
                kind: vault
                provider: aws
                method: aws_iam
                address: https://vault.internal:8200
                role: kong
                server_id: vault.internal
              - name: az-pg
                kind: postgres
                provider: azure
                host: pg.postgres.database.azure.com
                user: kong-identity
              - name: gcp-sql
                kind: postgres
                provider: gcp
                host: 10.0.0.5
            """)
        #expect(config.socket.mode == 0o660)
        #expect(config.socket.allowUIDs == [1000])
        #expect(config.socket.allowGIDs == [1000, 1001])
        #expect(config.refresh.minRemaining == .seconds(300))
        #expect(config.refresh.lifetimeFraction == 0.5)
        #expect(config.refresh.jitter == 0.2)
        #expect(config.refresh.backoffInitial == .milliseconds(500))
        #expect(config.refresh.backoffMax == .seconds(120))
        #expect(config.aws.region == "us-east-1")
        #expect(config.aws.stsEndpoint == "http://127.0.0.1:5000")
        #expect(config.azure.clientID == "abc")
        #expect(config.gcp.metadataHost == "127.0.0.1:8080")
        #expect(config.credentials.map(\.name.rawValue) == ["orders-db", "sessions", "vault", "az-pg", "gcp-sql"])
        let redis = config.credentials[1]
        #expect(redis.cacheName == "sessions-cache")
        #expect(redis.serverless == true)
        #expect(redis.engine == .elasticache)
        let vault = config.credentials[2]
        #expect(vault.method == .awsIAM)
        #expect(vault.mount == "aws")
        #expect(vault.serverID == "vault.internal")
        #expect(config.credentials[3].port == 5432)
        #expect(config.credentials[3].sslmode == "verify-full")
        #expect(config.credentials[4].user == nil)
    }

    @Test func defaultsApplyWhenSectionsAreLeftOut() throws {
        let config = try parse("credentials:\n" + rdsCredential)
        #expect(config.socket == SocketConfig())
        #expect(config.socket.path == "/run/credagent/agent.sock")
        #expect(config.socket.mode == 0o660)
        #expect(config.refresh == RefreshConfig())
        #expect(config.gcp.serviceAccount == "default")
    }

    @Test func portOutOfRangeNamesTheKeyPath() {
        let yaml = """
            credentials:
            \(rdsCredential)
              - name: b
                kind: redis
                provider: azure
                host: cache.redis.cache.windows.net
                user: x
              - name: c
                kind: postgres
                provider: aws
                host: db.example.com
                port: 70000
                user: kong
            """
        #expect(configIssues(yaml) == ["credentials[2].port: 70000 is not a port (1-65535)"])
    }

    @Test func unknownKeysAreRefusedAtEveryLevel() {
        let found = configIssues("""
            colour: blue
            socket: {path: /tmp/a.sock, owner: me, allow: {uids: [1], users: [x]}}
            refresh: {backoff: {initial: 1s, factor: 2}}
            aws: {regoin: us-east-1}
            azure: {client: x}
            gcp: {project: p}
            credentials:
              - name: a
                kind: postgres
                provider: aws
                host: h.example.com
                port: 5432
                user: u
                cache_name: nope
            """)
        #expect(found.contains { $0.hasPrefix("colour: is not a known key (allowed: socket, refresh, aws, azure, gcp, credentials)") })
        #expect(found.contains { $0.hasPrefix("socket.owner: is not a known key") })
        #expect(found.contains { $0.hasPrefix("socket.allow.users: is not a known key") })
        #expect(found.contains { $0.hasPrefix("refresh.backoff.factor: is not a known key") })
        #expect(found.contains { $0.hasPrefix("aws.regoin: is not a known key") })
        #expect(found.contains { $0.hasPrefix("azure.client: is not a known key") })
        #expect(found.contains { $0.hasPrefix("gcp.project: is not a known key") })
        #expect(found.contains { $0.hasPrefix("credentials[0].cache_name: is not a key of a postgres credential") })
        #expect(found.count == 8)
    }

    @Test(arguments: ["Orders", "-db", "a b", "", String(repeating: "a", count: 64), "ü"])
    func invalidNamesAreRefused(name: String) {
        let found = configIssues("""
            credentials:
              - name: "\(name)"
                kind: redis
                provider: gcp
                host: 10.0.0.3
            """)
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("credentials[0].name:") == true)
    }

    @Test func theClientRefreshSpacingIsConfigurableUpToFiveMinutes() throws {
        #expect(try parse("credentials:\n" + rdsCredential).refresh.clientMinInterval == .seconds(5))
        #expect(try parse("refresh: {client_min_interval: 500ms}\ncredentials:\n" + rdsCredential).refresh.clientMinInterval == .milliseconds(500))
        #expect(configIssues("refresh: {client_min_interval: 10m}\ncredentials:\n" + rdsCredential) == [
            "refresh.client_min_interval: 10m is more than 5m; clients would be answered with a secret that old",
        ])
    }

    @Test(arguments: ["a", "0", "orders-db", "a.b_c-d", String(repeating: "z", count: 63)])
    func validNamesAreAccepted(name: String) {
        #expect(CredentialName.isValid(name))
    }

    @Test func duplicateNamesPointAtTheFirstUse() {
        let found = configIssues("credentials:\n" + rdsCredential + "\n" + rdsCredential)
        #expect(found == ["credentials[1].name: 'orders-db' is already used by credentials[0]; names must be unique"])
    }

    @Test func requiredFieldsDependOnKindAndProvider() {
        #expect(configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: aws}
            """) == ["credentials[0].host: is missing",
                     "credentials[0].port: is missing; the port is part of the signed token",
                     "credentials[0].user: is missing"])
        #expect(configIssues("""
            credentials:
              - {name: a, kind: redis, provider: aws}
            """) == ["credentials[0].user: is missing", "credentials[0].cache_name: is missing"])
        #expect(configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: azure}
            """) == ["credentials[0].host: is missing", "credentials[0].user: is missing"])
        #expect(configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: gcp}
            """) == ["credentials[0].host: is missing"])
        #expect(configIssues("""
            credentials:
              - {name: a, kind: vault, provider: aws}
            """) == ["credentials[0].address: is missing", "credentials[0].role: is missing", "credentials[0].method: is missing"])
        #expect(configIssues("""
            credentials:
              - {name: a}
            """) == ["credentials[0].kind: is missing", "credentials[0].provider: is missing"])
    }

    @Test func kindAndProviderMustBeKnown() {
        #expect(configIssues("""
            credentials:
              - {name: a, kind: mysql, provider: oracle}
            """) == ["credentials[0].kind: 'mysql' is not one of postgres, redis, vault",
                     "credentials[0].provider: 'oracle' is not one of aws, azure, gcp"])
    }

    @Test func postgresProxyToARemoteServerMustCheckItsCertificate() {
        let refused = configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: aws, host: db.example.com, port: 5432, user: u, sslmode: require, proxy: {listen: "unix:/run/a"}}
              - {name: b, kind: postgres, provider: aws, host: db.example.com, port: 5432, user: u, sslmode: verify-ca, proxy: {listen: "unix:/run/b"}}
            """)
        #expect(refused.count == 2)
        #expect(refused.first?.hasPrefix("credentials[0].sslmode: 'require' does not check the server's certificate") == true, "\(refused)")
        #expect(refused.last?.hasPrefix("credentials[1].sslmode: 'verify-ca' without ca_file accepts a certificate for any name") == true, "\(refused)")
        // A CA of its own, a name checked, a server on this host, or no proxy: accepted.
        #expect(configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: aws, host: db.example.com, port: 5432, user: u, sslmode: verify-ca, ca_file: /etc/ca.pem, proxy: {listen: "unix:/run/a"}}
              - {name: b, kind: postgres, provider: aws, host: db.example.com, port: 5432, user: u, proxy: {listen: "unix:/run/b"}}
              - {name: c, kind: postgres, provider: aws, host: 127.0.0.1, port: 5432, user: u, sslmode: require, proxy: {listen: "unix:/run/c"}}
              - {name: d, kind: postgres, provider: aws, host: db.example.com, port: 5432, user: u, sslmode: require}
            """) == [])
    }

    @Test func plainConnectionsOnlyToLoopback() {
        let refused = configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: aws, host: db.example.com, port: 5432, user: u, sslmode: prefer}
              - {name: b, kind: redis, provider: azure, host: cache.example.com, user: u, tls: false}
            """)
        #expect(refused.count == 2)
        #expect(refused[0].hasPrefix("credentials[0].sslmode: 'prefer' would send the token to db.example.com without TLS"))
        #expect(refused[1].hasPrefix("credentials[1].tls: false would send the token to cache.example.com in clear"))
        #expect(configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: aws, host: 127.0.0.1, port: 5432, user: u, sslmode: disable}
              - {name: b, kind: redis, provider: azure, host: localhost, user: u, tls: false}
              - {name: c, kind: postgres, provider: azure, host: "::1", user: u, sslmode: allow}
            """) == [])
        #expect(configIssues("""
            credentials:
              - {name: a, kind: postgres, provider: aws, host: h.example.com, port: 5432, user: u, sslmode: sometimes}
            """) == ["credentials[0].sslmode: 'sometimes' is not one of disable, allow, prefer, require, verify-ca, verify-full"])
    }

    @Test func connectionLimitsAreBounded() throws {
        let config = try parse("socket: {max_connections: 64, idle_timeout: 5m, request_timeout: 2s}\ncredentials:\n" + rdsCredential)
        #expect(config.socket.maxConnections == 64)
        #expect(config.socket.idleTimeout == .seconds(300))
        #expect(config.socket.requestTimeout == .seconds(2))
        #expect(configIssues("socket: {max_connections: 0, idle_timeout: 500ms, request_timeout: 2h}\ncredentials:\n" + rdsCredential) == [
            "socket.max_connections: 0 is not a number of connections (1-65536)",
            "socket.idle_timeout: 500ms is not between 1s and 24h",
            "socket.request_timeout: 2h is not between 1s and 1h",
        ])
        #expect(configIssues("socket: {idle_timeout: 99999999999999999999s}\ncredentials:\n" + rdsCredential) == [
            "socket.idle_timeout: 1e+20s is not between 1s and 24h",
        ])
        #expect(configIssues("socket: {max_connections: many, idle_timeout: soon}\ncredentials:\n" + rdsCredential) == [
            "socket.max_connections: many is not a number of connections (1-65536)",
            "socket.idle_timeout: 'soon' is not a duration: use a number and a unit, e.g. 500ms, 30s, 5m, 1h",
        ])
    }

    @Test func foreignPeersGetABoundedShareOfTheConnections() throws {
        #expect(try parse("credentials:\n" + rdsCredential).socket.maxForeignConnections == 64)
        let config = try parse("socket: {max_connections: 10, max_foreign_connections: 9}\ncredentials:\n" + rdsCredential)
        #expect(config.socket.maxForeignConnections == 9)
        #expect(try parse("socket: {max_foreign_connections: 0}\ncredentials:\n" + rdsCredential).socket.maxForeignConnections == 0)
        #expect(configIssues("socket: {max_connections: 10, max_foreign_connections: 10}\ncredentials:\n" + rdsCredential) == [
            "socket.max_foreign_connections: 10 is not a number of connections from 0 to max_connections - 1 (9); "
                + "peers allowed to read secrets need at least one place",
        ])
        #expect(configIssues("socket: {max_foreign_connections: -1}\ncredentials:\n" + rdsCredential).count == 1)
        // Left at its default, the share shrinks below a small max_connections.
        let small = try parse("socket: {max_connections: 2}\ncredentials:\n" + rdsCredential)
        #expect(ServerLimits(socket: small.socket).maxForeignConnections == 1)
    }

    @Test func socketModeIsAnOctalString() throws {
        #expect(try parse("socket: {mode: \"0600\"}\ncredentials:\n" + rdsCredential).socket.mode == 0o600)
        #expect(try parse("socket: {mode: \"666\"}\ncredentials:\n" + rdsCredential).socket.mode == 0o666)
        #expect(configIssues("socket: {mode: \"0980\"}\ncredentials:\n" + rdsCredential)
            == ["socket.mode: '0980' is not an octal permission mode like \"0660\""])
        #expect(configIssues("socket: {mode: \"01777\"}\ncredentials:\n" + rdsCredential)
            == ["socket.mode: '01777' is not an octal permission mode like \"0660\""])
        #expect(configIssues("socket: {path: relative.sock}\ncredentials:\n" + rdsCredential)
            == ["socket.path: 'relative.sock' is not an absolute path"])
    }

    @Test func allowListsHoldNumericIDs() {
        #expect(configIssues("socket: {allow: {uids: [1000, kong], gids: 5}}\ncredentials:\n" + rdsCredential)
            == ["socket.allow.uids[1]: 'kong' is not a numeric id (0-4294967295)",
                "socket.allow.gids: must be a list of numeric ids, e.g. [1000]"])
    }

    @Test func refreshSettingsAreChecked() {
        #expect(configIssues("""
            refresh: {min_remaining: 5 minutes, lifetime_fraction: 1.5, jitter: -0.1, backoff: {initial: 10s, max: 1s}}
            credentials:
            \(rdsCredential)
            """) == [
                "refresh.min_remaining: '5 minutes' is not a duration: use a number and a unit, e.g. 500ms, 30s, 5m, 1h",
                "refresh.lifetime_fraction: 1.5 is not a fraction between 0 and 1 (exclusive)",
                "refresh.jitter: -0.1 is not between 0 and 0.5",
                "refresh.backoff.max: 1s is less than backoff.initial (10s)",
            ])
    }

    @Test func backoffMustNotRetryInATightLoop() {
        let tail = "credentials:\n" + rdsCredential
        #expect(configIssues("refresh: {backoff: {initial: 0s}}\n" + tail) == [
            "refresh.backoff.initial: 0s is less than 100ms; a failing endpoint would be retried in a tight loop",
        ])
        #expect(configIssues("refresh: {backoff: {initial: 50ms, max: 0s}}\n" + tail) == [
            "refresh.backoff.initial: 50ms is less than 100ms; a failing endpoint would be retried in a tight loop",
        ])
        #expect(configIssues("refresh: {backoff: {max: 0s}}\n" + tail) == [
            "refresh.backoff.max: 0s is less than backoff.initial (1s)",
        ])
        #expect(configIssues("refresh: {backoff: {initial: 2m}}\n" + tail) == [
            "refresh.backoff.max: 1m is less than backoff.initial (2m)",
        ])
        #expect(configIssues("refresh: {backoff: {initial: 100ms, max: 100ms}}\n" + tail) == [])
    }

    @Test func vaultOverPlainHTTPOnlyToLoopback() throws {
        #expect(configIssues("""
            credentials:
              - {name: a, kind: vault, provider: aws, method: aws_iam, address: "http://vault.internal:8200", role: r}
              - {name: b, kind: vault, provider: aws, method: aws_iam, address: "HTTP://10.0.0.8:8200/?x=secret", role: r}
            """) == [
                "credentials[0].address: 'http://vault.internal:8200/' would send the login and the token to vault.internal in clear; use https (plain http is allowed only to loopback hosts)",
                "credentials[1].address: 'http://10.0.0.8:8200/' would send the login and the token to 10.0.0.8 in clear; use https (plain http is allowed only to loopback hosts)",
            ])
        #expect(configIssues("""
            credentials:
              - {name: a, kind: vault, provider: aws, method: aws_iam, address: "http://127.0.0.1:8200", role: r}
              - {name: b, kind: vault, provider: aws, method: aws_iam, address: "http://[::1]:8200", role: r}
              - {name: c, kind: vault, provider: aws, method: aws_iam, address: "https://vault.internal:8200", role: r}
            """) == [])
    }

    @Test func vaultTLSServerNameAndRevocation() throws {
        let config = try parse("""
            credentials:
              - {name: a, kind: vault, provider: aws, method: aws_iam, address: "https://10.0.0.8:8200", role: r,
                 tls_server_name: vault.internal, revoke_on_shutdown: true}
              - {name: b, kind: vault, provider: aws, method: aws_iam, address: "https://vault.internal:8200", role: r}
            """)
        #expect(config.credentials[0].tlsServerName == "vault.internal")
        #expect(config.credentials[0].revokeOnShutdown == true)
        #expect(config.credentials[1].tlsServerName == nil)
        #expect(config.credentials[1].revokeOnShutdown == false)
        #expect(configIssues("""
            credentials:
              - {name: a, kind: vault, provider: aws, method: aws_iam, address: "https://v:8200", role: r, revoke_on_shutdown: yes}
              - {name: b, kind: postgres, provider: aws, host: h, port: 5432, user: u, tls_server_name: h}
            """) == [
                "credentials[0].revoke_on_shutdown: 'yes' is not true or false",
                "credentials[1].tls_server_name: is not a key of a postgres credential (allowed: name, kind, provider, host, port, user, database, sslmode, ca_file, resource, proxy, sinks, on_rotate)",
            ])
    }

    @Test func vaultFieldsAreChecked() throws {
        let config = try parse("""
            credentials:
              - {name: v1, kind: vault, provider: gcp, method: gcp_iam, address: "https://vault:8200", role: r}
              - {name: v2, kind: vault, provider: azure, method: jwt, address: "https://vault:8200", role: r, audience: api://vault}
              - {name: v3, kind: vault, provider: aws, method: aws_ec2, address: "http://127.0.0.1:8200", role: r, mount: team/aws, namespace: ns1}
            """)
        #expect(config.credentials.map(\.mount) == ["gcp", "jwt", "team/aws"])
        #expect(config.credentials[2].namespace == "ns1")
        #expect(configIssues("""
            credentials:
              - {name: a, kind: vault, provider: aws, method: azure, address: "https://v:8200", role: r}
              - {name: b, kind: vault, provider: gcp, method: jwt, address: "vault:8200", role: r}
              - {name: c, kind: vault, provider: aws, method: aws_ec2, address: "https://v:8200", role: r, server_id: x, mount: /aws}
              - {name: d, kind: vault, provider: aws, method: ldap, address: "https://v:8200", role: r}
            """) == [
                "credentials[0].method: azure logs in with a azure identity, not aws (use provider: azure, or method: jwt)",
                "credentials[1].address: 'vault:8200' is not an http(s) URL",
                "credentials[1].audience: is missing; method jwt needs the audience (GCP) or resource (Azure) the Vault role expects",
                "credentials[2].server_id: applies only to method aws_iam",
                "credentials[2].mount: '/aws' must be a path like 'aws' or 'auth-team/aws', without leading or trailing '/'",
                "credentials[3].method: 'ldap' is not one of aws_iam, aws_ec2, azure, gcp_gce, gcp_iam, jwt",
            ])
    }

    @Test func providerOnlyFieldsAreRefusedElsewhere() {
        #expect(configIssues("""
            credentials:
              - {name: a, kind: redis, provider: gcp, host: 10.0.0.3, cache_name: x, resource: y}
            """) == ["credentials[0].resource: applies only to provider azure", "credentials[0].cache_name: applies only to provider aws"])
    }

    @Test func wholeFileProblems() {
        #expect(configIssues("") == ["is empty; it needs at least a credentials list"])
        #expect(configIssues("socket: {}\n") == ["credentials: is missing; list at least one credential"])
        #expect(configIssues("credentials: []\n") == ["credentials: is empty; list at least one credential"])
        #expect(configIssues("credentials: {name: a}\n") == ["credentials: must be a list of credentials (lines starting with '- ')"])
        #expect(configIssues("- a\n- b\n") == ["must be a mapping of keys to values"])
        let notYAML = configIssues("socket: {path: [unclosed\n")
        #expect(notYAML.count == 1)
        #expect(notYAML.first?.hasPrefix("is not valid YAML: line ") == true)
        let duplicate = configIssues("socket: {}\nsocket: {}\ncredentials:\n" + rdsCredential)
        #expect(duplicate.count == 1)
        #expect(duplicate.first?.contains("the mapping has the key 'socket' more than once") == true)
    }

    @Test func everyProblemIsReportedAtOnce() {
        let found = configIssues("""
            socket: {mode: "x"}
            refresh: {jitter: 2}
            credentials:
              - {name: A, kind: postgres, provider: aws, host: h.example.com, port: 0, user: u}
            """)
        #expect(found.count == 4)
    }

    @Test func loadingAMissingFileNamesIt() {
        #expect(throws: ConfigError.self) { try AgentConfig.load(path: "/nonexistent/agent.yaml") }
        do {
            _ = try AgentConfig.load(path: "/nonexistent/agent.yaml")
        } catch {
            #expect("\(error)".contains("/nonexistent/agent.yaml"))
            #expect("\(error)".contains("no such file"))
        }
    }

    @Test func durations() {
        #expect(DurationText.duration("500ms") == .milliseconds(500))
        #expect(DurationText.duration("300s") == .seconds(300))
        #expect(DurationText.duration("5m") == .seconds(300))
        #expect(DurationText.duration("1h") == .seconds(3600))
        #expect(DurationText.duration("1.5h") == .seconds(5400))
        #expect(DurationText.duration("0.1s") == .milliseconds(100))
        #expect(DurationText.duration(".25s") == .milliseconds(250))
        #expect(DurationText.duration("1.5ms") == .microseconds(1500))
        #expect(DurationText.duration("300") == nil)
        #expect(DurationText.duration("s") == nil)
        #expect(DurationText.duration("-1s") == nil)
        #expect(DurationText.duration("5 m") == nil)
        #expect(DurationText.duration("1.2.3s") == nil)
        #expect(DurationText.format(.seconds(120)) == "2m")
        #expect(DurationText.format(.milliseconds(250)) == "250ms")
        #expect(DurationText.format(.seconds(5400)) == "90m")
        #expect(DurationText.format(.seconds(7200)) == "2h")
    }

    /// `Date` arithmetic on a configured duration uses the nearest `TimeInterval` to it, so `1.5s`
    /// is 1.5 and a duration far beyond any setting is still a number of seconds, not a trap.
    @Test func durationsInSeconds() {
        #expect(Duration.seconds(300).timeInterval == 300)
        #expect(DurationText.duration("1.5s")?.timeInterval == 1.5)
        #expect(DurationText.duration("0.043s")?.timeInterval == 0.043)
        #expect(DurationText.duration("43ms")?.timeInterval == 0.043)
        #expect(DurationText.duration("2h")?.timeInterval == 7200)
        #expect(DurationText.duration("99999999999999999999s")?.timeInterval == 1e20)
        #expect(DurationText.duration("999999999999999999999h")?.timeInterval == 1e20)
    }
}

@Suite struct ExampleConfigTests {
    /// The repository's `examples/` directory, found from this file's path.
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples").path

    /// Every config in `examples/`.
    static let files = ((try? FileManager.default.contentsOfDirectory(atPath: examples)) ?? [])
        .filter { $0.hasSuffix(".yaml") }.sorted()

    /// Stand-in values for the `${CREDAGENT_DEMO_*}` references that start an example's value, by
    /// the value's key; the scripts that use the example set the real ones. Any other reference
    /// stays unset: its default applies, or the load fails naming it.
    static let standIns: [String: String] = [
        "port": "5432", "host": "127.0.0.1", "path": "/tmp/credagent-demo", "ca_file": "/tmp/credagent-demo/ca.pem",
        "key_file": "/tmp/credagent-demo/key.json", "address": "http://127.0.0.1:8200",
        "imds_endpoint": "http://127.0.0.1:5000", "sts_endpoint": "http://127.0.0.1:5000", "metadata_host": "127.0.0.1:8080",
    ]

    @Test func examplesAreFound() {
        #expect(Self.files.contains("aws.yaml"))
        #expect(Self.files.count >= 4)
    }

    @Test(arguments: files)
    func shippedExamplesAreValid(file: String) throws {
        let path = Self.examples + "/" + file
        let environment = Self.demoEnvironment(for: try String(contentsOfFile: path, encoding: .utf8))
        let config = try AgentConfig.load(path: path, environment: environment)
        #expect(!config.credentials.isEmpty)
    }

    @Test func standInsAreChosenByKey() {
        #expect(Self.demoEnvironment(for: """
            socket: {path: "${CREDAGENT_DEMO_DIR}/agent.sock"}
            credentials:
              - port: ${CREDAGENT_DEMO_PG_PORT:-5432}
                address: ${CREDAGENT_DEMO_BAO_ADDR}
                role: ${CREDAGENT_DEMO_ROLE}
            aws: {imds_endpoint: "${CREDAGENT_DEMO_MOTO}", sts_endpoint: "http://${CREDAGENT_DEMO_STS}"}
            """) == ["CREDAGENT_DEMO_DIR": "/tmp/credagent-demo", "CREDAGENT_DEMO_PG_PORT": "5432",
                     "CREDAGENT_DEMO_BAO_ADDR": "http://127.0.0.1:8200", "CREDAGENT_DEMO_MOTO": "http://127.0.0.1:5000"])
    }

    /// Stand-ins for the `CREDAGENT_DEMO_*` variables whose reference starts a value in `text`
    /// (`key: ${...`, the value maybe quoted), each chosen by that key.
    static func demoEnvironment(for text: String) -> [String: String] {
        let prefix = "${CREDAGENT_DEMO_"
        var environment: [String: String] = [:]
        for line in text.split(separator: "\n") {
            var rest = line[...]
            while let reference = rest.range(of: prefix) {
                let name = line[line.index(reference.lowerBound, offsetBy: 2)...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                let before = line[..<reference.lowerBound]
                let keyEnd = before.hasSuffix(": \"") ? before.dropLast(3) : before.hasSuffix(": ") ? before.dropLast(2) : nil
                let key = keyEnd.map { String($0.reversed().prefix { $0.isLetter || $0 == "_" }.reversed()) }
                if environment[String(name)] == nil, let value = key.flatMap({ standIns[$0] }) { environment[String(name)] = value }
                rest = line[reference.upperBound...]
            }
        }
        return environment
    }
}
