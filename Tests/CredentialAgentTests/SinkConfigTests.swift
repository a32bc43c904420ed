import CloudAuth
import CredentialModel
import Foundation
import Testing
@testable import CredentialAgent

private func parse(_ credentialExtra: String, kind: String = "postgres") throws -> AgentConfig {
    let body = kind == "postgres"
        ? "kind: postgres\n    provider: gcp\n    host: db.example\n    user: kong\n    database: kong"
        : "kind: redis\n    provider: azure\n    host: cache.example\n    user: kong"
    return try ConfigParser.parse(yaml: "credentials:\n  - name: orders-db\n    \(body)\n\(credentialExtra)", file: "test.yaml")
}

private func issues(_ credentialExtra: String, kind: String = "postgres") -> [String] {
    do {
        _ = try parse(credentialExtra, kind: kind)
        return []
    } catch let error as ConfigError {
        return error.issues.map(\.description)
    } catch {
        return ["unexpected \(error)"]
    }
}

@Suite struct SinkConfigTests {
    @Test func sinksAndOnRotateAsTheDocsWriteThem() throws {
        let config = try parse("""
                sinks:
                  - {path: /run/secrets/orders-db.pgpass, format: pgpass, mode: "0640", owner: 1000, group: app}
                  - {path: /run/secrets/orders-db.json, format: json}
                  - {path: /run/secrets/orders-db.url, format: template,
                     template: "postgres://{{username}}:{{password | urlencode}}@{{host}}:{{port}}/{{database}}"}
                on_rotate: {signal: HUP, pid_file: /run/app/app.pid}
            """)
        let sinks = config.credentials[0].sinks
        #expect(sinks.files.count == 3)
        #expect(sinks.files[0] == SinkFile(path: "/run/secrets/orders-db.pgpass", format: .pgpass, mode: 0o640,
                                           owner: .id(1000), group: .name("app")))
        #expect(sinks.files[1].mode == 0o600, "the default mode")
        #expect(sinks.files[2].format.name == "template")
        #expect(sinks.onRotate == .signal(number: SIGHUP, name: "HUP", pidFile: "/run/app/app.pid"))

        let command = try parse("""
                on_rotate: {command: ["/usr/local/bin/reload", "--soft"], timeout: 5s}
            """)
        #expect(command.credentials[0].sinks.onRotate == .command(argv: ["/usr/local/bin/reload", "--soft"], timeout: .seconds(5)))
        #expect(try parse("").credentials[0].sinks.isEmpty)
    }

    @Test func badSinksAreNamedByKeyWithTheFix() {
        #expect(issues("""
                sinks:
                  - {path: run/x, format: json}
                  - {path: /run/x.url, format: template, template: "{{password | rot13}}"}
                  - {path: /run/y.url, format: template, template: "{{token}}:{{nope}}"}
                  - {path: /run/z, format: yaml}
                  - {path: /run/w, format: password, template: "{{password}}", mode: "644x", owner: "-1"}
                  - {path: /run/v, format: template}
            """) == [
                "credentials[0].sinks[0].path: 'run/x' is not an absolute path",
                "credentials[0].sinks[1].template: '{{password | rot13}}' uses the unknown filter 'rot13' (known: urlencode, json, base64, shell)",
                "credentials[0].sinks[2].template: {{token}}, {{nope}} are not fields of a postgres credential (fields: name, kind, provider, version, issued_at, expires_at, refresh_at, username, password, host, port, database, sslmode, ca_file)",
                "credentials[0].sinks[3].format: 'yaml' is not one of json, env, pgpass, password, template",
                "credentials[0].sinks[4].template: applies only to format template (this sink's format is password)",
                "credentials[0].sinks[4].mode: '644x' is not an octal permission mode like \"0600\" (quote it)",
                "credentials[0].sinks[4].owner: '-1' is neither a numeric id nor a user or group name",
                "credentials[0].sinks[5].template: is missing; format template needs the text, e.g. template: \"{{password}}\"",
            ])
        #expect(issues("    sinks:\n      - {path: /run/x, format: pgpass}", kind: "redis") == [
            "credentials[0].sinks[0].format: pgpass is for postgres credentials; use password, env, json or template for a redis credential",
        ])
        #expect(issues("    sinks:\n      - {path: /run/x, format: json}\n      - {path: /run/x, format: env}") == [
            "credentials[0].sinks[1].path: '/run/x' is also the path of credentials[0].sinks[0]; give each sink its own file",
        ])
    }

    @Test func aSinkPathHasNoDotComponentsAndMayNameASharedDirectory() throws {
        #expect(issues("    sinks:\n      - {path: /run/../tmp/x, format: json}\n      - {path: /run/./x, format: json}") == [
            "credentials[0].sinks[0].path: '/run/../tmp/x' has a '.' or '..' component; write the path without them",
            "credentials[0].sinks[1].path: '/run/./x' has a '.' or '..' component; write the path without them",
        ])
        let config = try parse("    sinks:\n      - {path: /shared/x, format: json, shared_directory: true}\n      - {path: /run/y, format: json}")
        #expect(config.credentials[0].sinks.files.map(\.sharedDirectory) == [true, false])
    }

    @Test func aSinkPathIsWrittenByOneCredentialOnly() {
        let yaml = """
            credentials:
              - {name: a, kind: postgres, provider: gcp, host: h, sinks: [{path: /run/s, format: json}]}
              - {name: b, kind: postgres, provider: gcp, host: h, sinks: [{path: /run/s, format: json}]}
            """
        #expect(throws: ConfigError(file: "t", issues: [ConfigIssue(
            path: "credentials[1].sinks[0].path", message: "'/run/s' is also the path of credentials[0].sinks[0]; give each sink its own file")])) {
            try ConfigParser.parse(yaml: yaml, file: "t")
        }
    }

    @Test func badHooksAreNamedByKeyWithTheFix() {
        #expect(issues("    on_rotate: {signal: HUP}") == ["credentials[0].on_rotate.pid_file: is missing"])
        #expect(issues("    on_rotate: {signal: KILLALL, pid_file: /run/app.pid}") == [
            "credentials[0].on_rotate.signal: 'KILLALL' is not one of HUP, USR1, USR2, INT, TERM, QUIT, WINCH, ALRM",
        ])
        #expect(issues("    on_rotate: {signal: HUP, pid_file: /p, command: [/bin/true]}") == [
            "credentials[0].on_rotate: has both signal and command; choose one",
        ])
        #expect(issues("    on_rotate: {command: [reload], timeout: 1h}") == [
            "credentials[0].on_rotate.command[0]: 'reload' is not an absolute path; give the program's full path (no shell runs the command)",
        ])
        #expect(issues("    on_rotate: {command: /bin/reload}").first?.contains("must be a list") == true)
        #expect(issues("    on_rotate: {command: [/bin/reload], timeout: 1h}") == [
            "credentials[0].on_rotate.timeout: 1h is not between 1s and 10m",
        ])
        #expect(issues("    on_rotate: {}") == ["credentials[0].on_rotate: needs either signal and pid_file, or command"])
    }

    @Test func ownerNamesAreLookedUpAndNumbersUsedAsTheyAre() throws {
        #expect(try SinkFileSystem.resolve(.name("root"), group: false) == 0)
        #expect(try SinkFileSystem.resolve(.name("root"), group: true) == 0)
        #expect(try SinkFileSystem.resolve(.id(4321), group: false) == 4321, "a uid the system does not know is fine")
        #expect(throws: SinkError.self) { try SinkFileSystem.resolve(.name("no-such-user-here"), group: false) }
    }
}
