import CloudAuth
import CredentialModel
import Foundation
import Testing
@testable import CredentialAgent

/// A postgres credential's JSON answer as the agent serves it, with a password that needs every
/// kind of escaping.
private let postgresAnswer = """
    {"name":"orders-db","kind":"postgres","provider":"aws","version":3,"username":"kong","password":"p:a\\\\ss/w'o%rd é",\
    "issued_at":"2026-11-22T10:00:00Z","expires_at":"2026-11-22T10:15:00Z","refresh_at":"2026-11-22T10:09:54Z",\
    "connection":{"host":"orders.example","port":5432,"database":null,"sslmode":"verify-full"}}
    """
private let password = "p:a\\ss/w'o%rd é"
/// Every character a shell or systemd treats specially, and spaces at the end.
private let awkwardPassword = "p\"q\\r`s$HOME'\\''t u=v!w<x>y é;#  "

/// `postgresAnswer` with `password` instead of its own.
private func answer(password: String) throws -> String {
    var object = try #require(try JSONSerialization.jsonObject(with: Data(postgresAnswer.utf8)) as? [String: Any])
    object["password"] = password
    return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
}

/// What `/bin/sh -c script` prints.
private func shell(_ script: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", script]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

private func fields(_ json: String = postgresAnswer) throws -> CredentialFields {
    try CredentialFields(json: Array(json.utf8))
}

private func render(_ format: SinkFormat, _ json: String = postgresAnswer) throws -> String {
    format.render(json: Array(json.utf8), fields: try fields(json)).reveal()
}

@Suite struct SinkFormatTests {
    @Test func fieldsAreTheAnswersScalarsWithConnectionFieldsBareAndDotted() throws {
        let fields = try fields()
        #expect(fields.value(of: "username") == "kong")
        #expect(fields.value(of: "version") == "3")
        #expect(fields.value(of: "host") == "orders.example")
        #expect(fields.value(of: "connection.port") == "5432")
        #expect(fields.value(of: "database") == .some(nil), "a JSON null is a field without a value")
        #expect(fields.value(of: "token") == nil, "a postgres credential has no token")
        #expect(!"\(fields)".contains("p:a"), "the fields never print the secret")
    }

    @Test func theJSONFormatIsTheAnswerByteForByte() throws {
        #expect(try render(.json) == postgresAnswer)
    }

    @Test func thePasswordFormatIsTheSecretAloneAndVaultsIsItsToken() throws {
        #expect(try render(.password) == password)
        let vault = #"{"name":"v","kind":"vault","provider":"gcp","version":1,"token":"hvs.abc","accessor":"x","renewable":true,"lease_duration":60,"connection":{"address":"https://vault:8200","namespace":null}}"#
        #expect(try render(.password, vault) == "hvs.abc")
        #expect(try fields(vault).value(of: "renewable") == "true")
    }

    @Test func pgpassEscapesColonsAndBackslashesAndWritesAStarForAMissingValue() throws {
        #expect(try render(.pgpass) == "orders.example:5432:*:kong:p\\:a\\\\ss/w'o%rd é\n")
    }

    @Test func envLinesAreDoubleQuotedSoThatAShellReadsTheValuesBack() throws {
        let text = try render(.env)
        #expect(text.hasPrefix("CREDAGENT_USERNAME=\"kong\"\nCREDAGENT_PASSWORD=\"p:a\\\\ss/w'o%rd é\"\n"))
        #expect(!text.contains("CREDAGENT_DATABASE"), "a null field is left out")
        #expect(!text.contains("CREDAGENT_TOKEN"))
        // A real shell reads every awkward password back unchanged.
        for password in [password, awkwardPassword] {
            let env = try render(.env, answer(password: password))
            #expect(try shell(env + "printf %s \"$CREDAGENT_PASSWORD\"") == password)
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze (scripts/bootstrap installs systemd)"))
    func envLinesReadTheSameToSystemd() throws {
        // systemd reads os-release with the parser of EnvironmentFile=; SYSTEMD_OS_RELEASE points
        // it at our file, and ConditionOSRelease= compares a value with what it read.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("credagent-env-\(UUID())").path
        defer { unlink(file) }
        for password in [password, awkwardPassword] {
            try render(.env, answer(password: password)).write(toFile: file, atomically: true, encoding: .utf8)
            func systemdReads(_ value: String) throws -> Bool {
                // Every ASCII character escaped, so that the condition's own parser takes it as it is.
                let escaped = value.unicodeScalars.map { $0.isASCII ? "\\\($0)" : "\($0)" }.joined()
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
                process.arguments = ["condition", "ConditionOSRelease=\"CREDAGENT_PASSWORD=\(escaped)\""]
                process.environment = ["SYSTEMD_OS_RELEASE": file, "PATH": "/usr/bin:/bin"]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                try process.run()
                process.waitUntilExit()
                return process.terminationStatus == 0
            }
            #expect(try systemdReads(password), "systemd reads \(password.debugDescription) back")
            #expect(try !systemdReads(password + "x"), "and the comparison is exact")
        }
    }

    @Test func aLineBreakInAValueIsRefusedByTheLineFormatsOnly() throws {
        let broken = try fields(answer(password: "line\r\nbreak"))
        #expect(SinkFormat.env.problem(with: broken) == "the credential's password holds a line break or NUL, which the env format cannot carry (one value per line); use the json format or a template for it")
        #expect(SinkFormat.pgpass.problem(with: broken)?.hasPrefix("the credential's password holds a line break or NUL, which the pgpass format") == true)
        #expect(SinkFormat.json.problem(with: broken) == nil)
        #expect(SinkFormat.password.problem(with: broken) == nil)
        #expect(SinkFormat.env.problem(with: try fields()) == nil)
        #expect(SinkFormat.pgpass.problem(with: try fields(answer(password: awkwardPassword))) == nil)
    }

    @Test func aQuoteFollowedByACombiningMarkIsEscapedAllTheSame() throws {
        // One character to Swift, a quote and an accent to a shell or libpq.
        let password = "a'\u{301}b\"\u{301}c:\u{301}d"
        let json = try answer(password: password)
        let quoted = try render(.template(SinkTemplate(parsing: "{{password | shell}}")), json)
        #expect(try shell("printf %s \(quoted)") == password)
        #expect(try shell(render(.env, json) + "printf %s \"$CREDAGENT_PASSWORD\"") == password)
        #expect(try render(.pgpass, json).hasSuffix(":a'\u{301}b\"\u{301}c\\:\u{301}d\n"))
    }

    @Test func templatesFillFieldsThroughTheirFilters() throws {
        let template = try SinkTemplate(parsing: "postgres://{{username}}:{{password | urlencode}}@{{host}}:{{ port }}/{{database}}")
        #expect(template.fields == ["username", "password", "host", "port", "database"])
        #expect(try render(.template(template)) == "postgres://kong:p%3Aa%5Css%2Fw%27o%25rd%20%C3%A9@orders.example:5432/")
        let others = try SinkTemplate(parsing: "{{password|json}} {{password | base64}} {{password|shell}} {{connection.host}}")
        #expect(try render(.template(others)) == "\"p:a\\\\ss/w'o%rd é\" \(Data(password.utf8).base64EncodedString()) 'p:a\\ss/w'\\''o%rd é' orders.example")
    }

    @Test func malformedTemplatesAreRefusedWithTheFix() {
        func message(_ text: String) -> String {
            do {
                _ = try SinkTemplate(parsing: text)
                return ""
            } catch {
                return error.message
            }
        }
        #expect(message("{{password | rot13}}") == "'{{password | rot13}}' uses the unknown filter 'rot13' (known: urlencode, json, base64, shell)")
        #expect(message("a {{password") == "has a '{{' that is never closed; end each placeholder with '}}'")
        #expect(message("{{ }}").contains("has an empty placeholder"))
        #expect(message("{{password + 1}}").contains("does not name a field"))
        #expect(message("{{ readFile('/etc/shadow') }}").contains("does not name a field"))
    }
}
