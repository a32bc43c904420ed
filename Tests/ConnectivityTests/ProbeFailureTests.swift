import CloudAuth
@testable import Connectivity
import Foundation
import Testing

/// Real sockets on loopback that refuse or never answer: what unreachable and hung servers do.
@Suite struct UnreachableAndSilentServerTests {
    @Test func postgresOnARefusedPortIsUnreachable() async throws {
        let port = try closedPort()
        let target = PostgresTarget(host: "127.0.0.1", port: port, database: "gateway", user: "kong",
                                    password: Secret("token-123"), sslmode: "require")
        let report = await PostgresProbe(name: "db", target: target).run()
        #expect(report.failure?.cause == .unreachable)
        #expect(report.failure?.message.contains("\(port)") == true)
    }

    @Test func postgresOnASilentServerTimesOut() async throws {
        let listener = try SilentListener()
        let target = PostgresTarget(host: "127.0.0.1", port: listener.port, database: "gateway", user: "kong",
                                    password: Secret("token-123"), sslmode: "require", connectTimeout: 2)
        let report = await PostgresProbe(name: "db", target: target).run()
        #expect(report.failure?.cause == .timeout)
        #expect(report.totalSeconds >= 1.5 && report.totalSeconds < 10)
    }

    @Test func redisOnARefusedPortIsUnreachable() async throws {
        let target = RedisTarget(host: "127.0.0.1", port: try closedPort(), password: Secret("token-123"), tls: false)
        let report = await RedisProbe(name: "cache", target: target).run()
        #expect(report.failure?.cause == .unreachable)
        #expect(report.failure?.message.contains("refused") == true)
    }

    @Test func redisOnANameThatDoesNotResolveIsUnreachable() async throws {
        let target = RedisTarget(host: "no-such-host.invalid", port: 6379, tls: false)
        let report = await RedisProbe(name: "cache", target: target).run()
        #expect(report.failure?.cause == .unreachable)
        #expect(report.failure?.message.contains("does not resolve") == true)
    }

    @Test func redisOnASilentServerTimesOutWaitingForTheAnswer() async throws {
        let listener = try SilentListener()
        let target = RedisTarget(host: "127.0.0.1", port: listener.port, password: Secret("token-123"), tls: false,
                                 ioTimeout: 0.3)
        let report = await RedisProbe(name: "cache", target: target).run()
        #expect(report.failure?.cause == .timeout)
        #expect(report.steps.map(\.name) == ["connect", "auth"])
        #expect(report.steps.last!.seconds >= 0.25)
        #expect(report.failure?.message.contains("token-123") == false)
    }

    @Test func aSilentServerSpokenTLSToDoesNotServeTLS() async throws {
        let listener = try SilentListener()
        let target = RedisTarget(host: "127.0.0.1", port: listener.port, tls: true, ioTimeout: 0.3)
        let report = await RedisProbe(name: "cache", target: target).run()
        #expect(report.failure?.cause == .tlsUnavailable)
        #expect(report.steps.map(\.name) == ["connect", "tls"])
    }

    @Test func postgresRequiringTLSFromAServerThatRefusesIt() async throws {
        // A PostgreSQL server with ssl off answers the client's SSLRequest with a single 'N'.
        let server = try OneAnswerServer(answer: Array("N".utf8))
        let target = PostgresTarget(host: "127.0.0.1", port: server.port, database: "gateway", user: "kong",
                                    password: Secret("token-123"), sslmode: "require")
        let report = await PostgresProbe(name: "db", target: target).run()
        #expect(report.failure?.cause == .tlsUnavailable)
        #expect(report.failure?.message.contains("does not support SSL") == true)
    }

    @Test func redisAnsweredByAnotherProtocolIsAProtocolError() async throws {
        let server = try OneAnswerServer(answer: Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8))
        let target = RedisTarget(host: "127.0.0.1", port: server.port, password: Secret("token-123"), tls: false)
        let report = await RedisProbe(name: "cache", target: target).run()
        #expect(report.failure?.cause == .protocolError)
        #expect(report.failure?.message.contains("token-123") == false)
    }

    @Test func vaultOnARefusedPortIsUnreachable() async throws {
        let endpoint = VaultEndpoint(address: "http://127.0.0.1:\(try closedPort())")
        let report = await VaultProbe(name: "vault", endpoint: endpoint, token: Secret("s.token")).run()
        #expect(report.failure?.cause == .unreachable)
        #expect(report.failure?.message.contains("/v1/auth/token/lookup-self") == true)
    }

    @Test func aMissingCAFileIsNamed() async throws {
        let listener = try SilentListener()
        let target = RedisTarget(host: "127.0.0.1", port: listener.port, tls: true, caFile: "/nonexistent/ca.pem")
        let report = await RedisProbe(name: "cache", target: target).run()
        #expect(report.failure?.cause == .invalidInput)
        #expect(report.failure?.message.contains("/nonexistent/ca.pem") == true)
    }
}

/// libpq reports connection failures only as text: these are its real messages (PostgreSQL 15).
@Suite struct PostgresFailureTextTests {
    private func cause(_ message: String, sslmode: String = "verify-full") -> ProbeCause {
        PostgresFailure.classify(message, sslmode: sslmode).cause
    }

    @Test func mapsLibpqMessagesToCauses() {
        let prefix = "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: "
        #expect(cause(prefix + "FATAL:  password authentication failed for user \"kong\"") == .rejected)
        #expect(cause(prefix + "FATAL:  PAM authentication failed for user \"kong\"") == .rejected)
        #expect(cause(prefix + "fe_sendauth: no password supplied") == .authRequired)
        #expect(cause(prefix + "FATAL:  database \"nosuch\" does not exist") == .databaseMissing)
        #expect(cause(prefix + "SSL error: certificate verify failed") == .untrustedCertificate)
        #expect(cause(prefix + "root certificate file \"/root/.postgresql/root.crt\" does not exist Either provide the file or change sslmode to disable server certificate verification.") == .untrustedCertificate)
        #expect(cause("connection to server at \"127.0.0.1\", port 5432 failed: server certificate for \"localhost\" (and 2 other names) does not match host name \"wrong.invalid\"") == .hostnameMismatch)
        #expect(cause(prefix + "server does not support SSL, but SSL was required") == .tlsUnavailable)
        #expect(cause(prefix + "Connection refused Is the server running on that host and accepting TCP/IP connections?") == .unreachable)
        #expect(cause("could not translate host name \"nosuch.invalid\" to address: Name or service not known") == .unreachable)
        #expect(cause(prefix + "timeout expired") == .timeout)
        #expect(cause(prefix + "FATAL:  the database system is starting up") == .serverError)
    }

    @Test func aMissingHBARuleWithoutEncryptionMeansTLSIsRequiredOnlyWhenTLSWasOff() {
        let message = "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"kong\", database \"gateway_tls\", no encryption"
        #expect(cause(message, sslmode: "disable") == .tlsRequired)
        #expect(cause(message, sslmode: "verify-full") == .notPermitted)
        #expect(cause(message.replacingOccurrences(of: "no encryption", with: "SSL encryption"), sslmode: "disable") == .notPermitted)
    }
}

@Suite struct RedisProtocolTests {
    @Test func formatsArgumentsAsLengthPrefixedStringsWhateverTheyHold() {
        let bytes = RedisCommand.encode(["AUTH", "kong", "a b\r\n*1"])
        #expect(String(decoding: bytes, as: UTF8.self) == "*3\r\n$4\r\nAUTH\r\n$4\r\nkong\r\n$7\r\na b\r\n*1\r\n")
    }

    @Test func parsesRepliesFedInPieces() throws {
        let reader = RedisReplyReader()
        let wire = Array("+PONG\r\n-WRONGPASS invalid username-password pair\r\n:42\r\n$5\r\nhello\r\n*2\r\n$1\r\na\r\n$-1\r\n".utf8)
        var replies: [RedisReply] = []
        for byte in wire {
            try [byte].withUnsafeBytes { try reader.feed($0) }
            while let reply = try reader.next() { replies.append(reply) }
        }
        #expect(replies == [.status("PONG"), .error("WRONGPASS invalid username-password pair"), .integer(42),
                            .bulk(Array("hello".utf8)), .array([.bulk([97]), .null])])
    }

    @Test func rejectsWhatIsNotRedisProtocol() throws {
        let reader = RedisReplyReader()
        #expect(throws: ProbeFailure.self) {
            try Array("HTTP/1.1 400 Bad Request\r\n".utf8).withUnsafeBytes { try reader.feed($0) }
            _ = try reader.next()
        }
    }

    @Test func readsTheVersionFromInfo() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n"
        #expect(RedisProbe.serverVersion(info) == "7.0.15")
        #expect(RedisProbe.serverVersion("# Server\r\n") == nil)
    }

    @Test func mapsRedisErrorsToCauses() {
        let target = RedisTarget(host: "cache", user: "kong", password: Secret("t"))
        #expect(RedisProbe.authFailure("WRONGPASS invalid username-password pair or user is disabled.", target: target).cause == .rejected)
        #expect(RedisProbe.authFailure("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?", target: target).cause == .rejected)
        #expect(RedisProbe.pingFailure("NOAUTH Authentication required.").cause == .authRequired)
        #expect(RedisProbe.pingFailure("NOPERM this user has no permissions to run the 'ping' command").cause == .notPermitted)
    }
}
