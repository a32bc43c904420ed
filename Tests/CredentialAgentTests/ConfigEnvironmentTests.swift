import CloudAuth
import Foundation
import Testing
@testable import CredentialAgent

/// `${NAME}` references in config values (docs/CONFIG.md, "Environment references").
@Suite struct ConfigEnvironmentTests {
    private func parse(_ yaml: String, _ environment: [String: String]) throws -> AgentConfig {
        try ConfigParser.parse(yaml: yaml, file: "test.yaml", environment: environment)
    }

    /// The issues `yaml` produces under `environment`, as `path: message` lines.
    private func issues(_ yaml: String, _ environment: [String: String]) -> [String] {
        do {
            _ = try parse(yaml, environment)
            return []
        } catch let error as ConfigError {
            return error.issues.map(\.description)
        } catch {
            return ["unexpected \(error)"]
        }
    }

    /// One AWS Postgres credential whose host and port are given by the caller.
    private func postgres(host: String = "db.example.com", port: String = "5432") -> String {
        """
        credentials:
          - name: orders-db
            kind: postgres
            provider: aws
            host: \(host)
            port: \(port)
            user: kong

        """
    }

    @Test func referencesExpandInStringsNumbersDurationsAndListItems() throws {
        let config = try parse("""
            socket:
              path: ${DEMO_DIR}/agent.sock
              mode: "${SOCKET_MODE}"
              allow:
                uids: [1000, "${GATEWAY_UID}"]
            refresh:
              min_remaining: ${MIN_REMAINING}
              lifetime_fraction: ${FRACTION}
            aws:
              sts_endpoint: http://${STS_HOST}:${STS_PORT}

            """ + postgres(host: "${PG_HOST}", port: "${PG_PORT}"),
            ["DEMO_DIR": "/tmp/demo", "SOCKET_MODE": "0600", "GATEWAY_UID": "1001", "MIN_REMAINING": "90s",
             "FRACTION": "0.5", "STS_HOST": "127.0.0.1", "STS_PORT": "5000", "PG_HOST": "127.0.0.1", "PG_PORT": "15432"])
        #expect(config.socket.path == "/tmp/demo/agent.sock")
        #expect(config.socket.mode == 0o600)
        #expect(config.socket.allowUIDs == [1000, 1001])
        #expect(config.refresh.minRemaining == .seconds(90))
        #expect(config.refresh.lifetimeFraction == 0.5)
        #expect(config.aws.stsEndpoint == "http://127.0.0.1:5000")
        #expect(config.credentials[0].host == "127.0.0.1")
        #expect(config.credentials[0].port == 15432)
    }

    @Test func defaultsApplyWhenUnsetOrEmptyAndOnlyThen() throws {
        let yaml = postgres(host: "${PG_HOST:-127.0.0.1}", port: "${PG_PORT:-5433}")
        let unset = try parse(yaml, [:])
        #expect(unset.credentials[0].host == "127.0.0.1")
        #expect(unset.credentials[0].port == 5433)
        let empty = try parse(yaml, ["PG_HOST": "", "PG_PORT": ""])
        #expect(empty.credentials[0].host == "127.0.0.1")
        #expect(empty.credentials[0].port == 5433)
        let set = try parse(yaml, ["PG_HOST": "db.internal", "PG_PORT": "6432"])
        #expect(set.credentials[0].host == "db.internal")
        #expect(set.credentials[0].port == 6432)
        // An empty default: the value is empty, which leaves an optional key unset.
        let noDatabase = try parse(yaml + "    database: ${PG_DATABASE:-}\n    ca_file: ${PG_CA_FILE}\n", ["PG_CA_FILE": ""])
        #expect(noDatabase.credentials[0].database == nil)
        #expect(noDatabase.credentials[0].caFile == nil)
        #expect(try parse(yaml + "    database: ${PG_DATABASE:-}\n", ["PG_DATABASE": "kong"]).credentials[0].database == "kong")
    }

    @Test func emptyValuesCountAsLeftOut() throws {
        let config = try parse("""
            socket:
              allow:
                uids: [1000, "${EXTRA_UID:-}"]
            credentials:
              - name: cache
                kind: redis
                provider: azure
                host: 127.0.0.1
                user: kong
                port: ${REDIS_PORT:-}
                tls: ${REDIS_TLS}
            """, ["REDIS_TLS": ""])
        #expect(config.socket.allowUIDs == [1000])
        #expect(config.credentials[0].port == 6379)
        #expect(config.credentials[0].tls == true)
    }

    @Test func emptyValuesOfRequiredKeysNameTheReference() {
        #expect(issues(postgres(host: "${PG_HOST}", port: "${PG_PORT:-}"), ["PG_HOST": ""]) == [
            "credentials[0].host (from ${PG_HOST}): is empty",
            "credentials[0].port (from ${PG_PORT:-}): is empty",
        ])
    }

    @Test func doubledDollarIsALiteralDollar() throws {
        let config = try parse("""
            credentials:
              - name: v
                kind: vault
                provider: aws
                method: aws_iam
                address: https://vault.internal:8200
                role: price$$list-$${NOT_A_REFERENCE}-${ROLE_SUFFIX}
            """, ["NOT_A_REFERENCE": "expanded", "ROLE_SUFFIX": "$$"])
        // A variable's value is not expanded again: its "$$" stays as it is.
        #expect(config.credentials[0].role == "price$list-${NOT_A_REFERENCE}-$$")
    }

    @Test func unsetVariableWithoutDefaultSaysHowToFixIt() {
        #expect(issues(postgres(host: "${PG_HOST}", port: "${PG_PORT}"), ["PG_HOST": "db.internal"]) == [
            "credentials[0].port: ${PG_PORT} is not set; set it, or give a default: ${PG_PORT:-value}",
        ])
        #expect(issues("socket: {path: \"${A}/${B}.sock\"}\n" + postgres(), [:]) == [
            "socket.path: ${A} is not set; set it, or give a default: ${A:-value}",
            "socket.path: ${B} is not set; set it, or give a default: ${B:-value}",
        ])
    }

    @Test func checksApplyToTheExpandedValueAndNameTheReference() {
        #expect(issues(postgres(port: "${PG_PORT}"), ["PG_PORT": "70000"]) == [
            "credentials[0].port (from ${PG_PORT}): 70000 is not a port (1-65535)",
        ])
        #expect(issues("refresh: {min_remaining: \"${MIN}\"}\n" + postgres(), ["MIN": "5 minutes"]) == [
            "refresh.min_remaining (from ${MIN}): '5 minutes' is not a duration: use a number and a unit, e.g. 500ms, 30s, 5m, 1h",
        ])
        #expect(issues("socket: {path: \"${DIR}/agent.sock\"}\n" + postgres(), ["DIR": "run"]) == [
            "socket.path (from ${DIR}/agent.sock): 'run/agent.sock' is not an absolute path",
        ])
        #expect(issues("socket: {allow: {uids: [\"${UID}\"]}}\n" + postgres(), ["UID": "kong"]) == [
            "socket.allow.uids[0] (from ${UID}): 'kong' is not a numeric id (0-4294967295)",
        ])
    }

    @Test(arguments: [
        ("${", "'${' has a '${' without its closing '}': write ${NAME}, or $$ for a literal '$'"),
        ("h-${HOST", "'h-${HOST' has a '${' without its closing '}': write ${NAME}, or $$ for a literal '$'"),
        ("${1X}", "'${1X}' is not a reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and '_' not starting with a digit, and no '$' in the default"),
        ("${}", "'${}' is not a reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and '_' not starting with a digit, and no '$' in the default"),
        ("${HOST-x}", "'${HOST-x}' is not a reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and '_' not starting with a digit, and no '$' in the default"),
        ("${HOST:=x}", "'${HOST:=x}' is not a reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and '_' not starting with a digit, and no '$' in the default"),
        ("${A:-${B}}", "'${A:-${B}' is not a reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and '_' not starting with a digit, and no '$' in the default"),
        ("$HOST", "'$HOST' has a '$' that does not start a reference: write ${NAME}, or $$ for a literal '$'"),
        ("host$", "'host$' has a '$' that does not start a reference: write ${NAME}, or $$ for a literal '$'"),
    ])
    func malformedReferencesAreErrors(host: String, message: String) {
        #expect(issues(postgres(host: "\"\(host)\""), ["HOST": "h", "A": "a", "B": "b"]) == ["credentials[0].host: \(message)"])
    }

    @Test func keysAreNotExpanded() {
        #expect(issues("${SECTION}: {path: /tmp/a.sock}\n" + postgres(), ["SECTION": "socket"]) == [
            "${SECTION}: is not a known key (allowed: socket, refresh, aws, azure, gcp, credentials)",
        ])
    }

    @Test func variablesCannotAddStructure() throws {
        let injected = "kong\n    sslmode: disable\n    database: {a: b}"
        let config = try parse(postgres() + "    database: ${DATABASE}\n", ["DATABASE": injected])
        #expect(config.credentials[0].database == injected)
        #expect(config.credentials[0].sslmode == "verify-full")
        // Nor make a value null: only an empty expansion leaves a key unset.
        #expect(try parse(postgres() + "    database: ${DATABASE}\n", ["DATABASE": "null"]).credentials[0].database == "null")
    }

    @Test func valuesWithoutReferencesAreUntouched() throws {
        #expect(try parse(postgres(), [:]).credentials[0].host == "db.example.com")
        #expect(EnvironmentReferences.expand("no references", environment: [:]) == .success("no references"))
        #expect(EnvironmentReferences.expand("${A}${B}-${A}", environment: ["A": "x", "B": "y"]) == .success("xy-x"))
    }

    @Test func loadExpandsFromTheGivenEnvironment() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("envconfig-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try postgres(port: "${PG_PORT}").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try AgentConfig.load(path: file, environment: ["PG_PORT": "6543"]).credentials[0].port == 6543)
        #expect(throws: ConfigError.self) { try AgentConfig.load(path: file, environment: [:]) }
    }
}
