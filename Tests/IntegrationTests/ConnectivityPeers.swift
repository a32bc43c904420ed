import CloudAuth
import Foundation
import TestSupport

/// A token that looks like a cloud IAM token (query string, `&`, `=`, `%`, `/`), so that tests also
/// prove it travels through libpq and the Redis protocol unmangled. Fresh per call.
func fakeIAMToken() -> Secret {
    let signature = Encoding.hex(Digest.randomBytes(32))
    return Secret("db.example:5432/?Action=connect&DBUser=kong&X-Amz-Credential=AKID%2F20261122%2Fus-east-1"
                  + "&X-Amz-Signature=\(signature)")
}

/// A user name no other test uses.
func uniqueUser(_ prefix: String) -> String {
    "\(prefix)_\(Encoding.hex(Digest.randomBytes(4)))"
}

/// The PostgreSQL that scripts/peers/postgres started: TLS on, scram-sha-256, database
/// `gateway` open to TLS and plain TCP, `gateway_tls` to TLS only.
enum PostgresPeer {
    static var available: Bool { Peers.env("CREDAGENT_TEST_PG_PORT") != nil }
    static var host: String { Peers.env("CREDAGENT_TEST_PG_HOST") ?? "localhost" }
    static var port: Int { Int(Peers.env("CREDAGENT_TEST_PG_PORT") ?? "") ?? 5432 }
    static var database: String { Peers.env("CREDAGENT_TEST_PG_DATABASE") ?? "gateway" }
    static var tlsOnlyDatabase: String { Peers.env("CREDAGENT_TEST_PG_TLS_ONLY_DATABASE") ?? "gateway_tls" }
    static var caFile: String? { Peers.env("CREDAGENT_TEST_CA_FILE") }
    static var otherCAFile: String? { Peers.env("CREDAGENT_TEST_OTHER_CA_FILE") }

    /// Creates a login role whose password is `token`: locally this plays the cloud's part of
    /// accepting the IAM token it issued. The SQL goes to psql on stdin, never in arguments.
    static func createRole(_ user: String, password token: Secret) async throws {
        try await runAsAdmin("CREATE ROLE \"\(user)\" LOGIN PASSWORD", token)
    }

    /// Makes `token` the role's password instead of the one it had: the cloud accepting a
    /// rotated token (and no longer the old one).
    static func setPassword(_ user: String, password token: Secret) async throws {
        try await runAsAdmin("ALTER ROLE \"\(user)\" PASSWORD", token)
    }

    /// Runs `statement 'token';` as the admin user (``admin(_:masking:)``).
    private static func runAsAdmin(_ statement: String, _ token: Secret) async throws {
        let literal = token.reveal().replacingOccurrences(of: "'", with: "''")
        try await admin("\(statement) '\(literal)';\n", masking: token)
    }
}

extension PostgresPeer {
    /// A `credentials:` list entry (YAML at the list's indentation) for `name`: a postgres
    /// credential of the GCP identity for `user` on this server. `more` are further keys of the
    /// entry, one a line (nested ones indented beneath).
    static func gcpCredential(_ name: String, user: String, more: [String] = []) -> String {
        credentialEntry(name, ["kind: postgres", "provider: gcp", "host: \(host)", "port: \(port)", "user: \(user)",
                               "database: \(database)"] + more)
    }
}

extension RedisPeer {
    /// A `credentials:` list entry (YAML at the list's indentation) for `name`: a redis credential
    /// of the Azure identity for `user` on this server's TLS port, verified with the test CA.
    /// `more` are further keys of the entry, one a line (nested ones indented beneath).
    static func credential(_ name: String, user: String, more: [String] = []) -> String {
        credentialEntry(name, ["kind: redis", "provider: azure", "host: \(host)", "port: \(tlsPort)", "user: \(user)",
                               "ca_file: \(caFile ?? "")"] + more)
    }
}

/// An agent config on the socket `socket` (``AgentProcess`` replaces `SOCKET` with its own) whose
/// credentials are `entries` (such as ``PostgresPeer/gcpCredential(_:user:more:)``'s).
func agentConfig(socket: String = "SOCKET", credentials entries: String...) -> String {
    "socket:\n  path: \(socket)\ncredentials:\n" + entries.joined(separator: "\n") + "\n"
}

/// The `credentials:` list entry `name` with `keys`, one a line, indented as the list's items.
private func credentialEntry(_ name: String, _ keys: [String]) -> String {
    (["- name: \(name)"] + keys.map { "  " + $0 }).map { "  " + $0 }.joined(separator: "\n")
}

/// The Redis that scripts/peers/redis started: a plain port and a TLS port, ACLs on.
enum RedisPeer {
    static var available: Bool { Peers.env("CREDAGENT_TEST_REDIS_PORT") != nil }
    static var host: String { Peers.env("CREDAGENT_TEST_REDIS_HOST") ?? "localhost" }
    static var port: Int { Int(Peers.env("CREDAGENT_TEST_REDIS_PORT") ?? "") ?? 6379 }
    static var tlsPort: Int { Int(Peers.env("CREDAGENT_TEST_REDIS_TLS_PORT") ?? "") ?? 6380 }
    static var caFile: String? { Peers.env("CREDAGENT_TEST_CA_FILE") }
    static var otherCAFile: String? { Peers.env("CREDAGENT_TEST_OTHER_CA_FILE") }

    /// Creates (or resets) an ACL user whose password is `token`, with every permission. The
    /// command goes to redis-cli on stdin and the admin password through its environment.
    static func createUser(_ user: String, password token: Secret) async throws {
        let passwordFile = Peers.env("CREDAGENT_TEST_REDIS_ADMIN_PASSWORD_FILE") ?? ""
        let adminPassword = try String(contentsOfFile: passwordFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let result = try await ChildProcess.run(
            "/usr/bin/redis-cli",
            ["-h", "127.0.0.1", "-p", String(port), "--user", Peers.env("CREDAGENT_TEST_REDIS_ADMIN_USER") ?? "default",
             "--no-auth-warning"],
            environment: ["REDISCLI_AUTH": adminPassword],
            stdin: Data("ACL SETUSER \(user) reset on >\(token.reveal()) ~* &* +@all\n".utf8))
        guard result.status == 0, result.stdout.contains("OK") else {
            throw CloudAuthError(.rejected, source: "redis-cli", "creating user \(user) failed: \(result.stdout) \(result.stderr)")
        }
    }
}
