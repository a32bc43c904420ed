import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// `health`, `get` and `token rds` written in plain form (`--name value`) are read without
/// swift-argument-parser; written `--name=value` they go through it. Whichever way, a command line
/// must print the same, write the same errors and exit the same.
@Suite struct PlainCommandLineTests {
    /// One command line in both spellings: `plain` as the plain reader takes it, `parsed` with the
    /// options of `equalsForm` written `--name=value`, which only swift-argument-parser reads.
    static func spellings(_ plain: [String], equalsForm: Set<String>) -> (plain: [String], parsed: [String]) {
        var parsed: [String] = []
        var words = plain[...]
        while let word = words.popFirst() {
            if equalsForm.contains(word), let value = words.popFirst() {
                parsed.append("\(word)=\(value)")
            } else {
                parsed.append(word)
            }
        }
        return (plain, parsed)
    }

    @Test func healthAndGetBehaveTheSameInEitherSpelling() async throws {
        let fixture = try await EmulatedAgent(label: "plain-command-line", config: emulatorAgentConfig())
        try await withCleanup {
            try await waitUntil("every credential is servable", timeout: 30) {
                (try? await fixture.agent.request("GET", "/v1/ready"))?.status == 200
            }
            let socket = fixture.agent.socketPath
            let missing = socket + ".missing"
            let lines: [(arguments: [String], status: Int32)] = [
                (["health", "--socket", socket], 0),
                (["health", "--ready", "--socket", socket], 0),
                (["health", "--socket", missing], 3),
                (["health", "--socket", socket, "--server-uid", "no-such-user-here"], 2),
                (["get", "az-pg", "--field", "password", "--socket", socket], 0),
                (["get", "az-pg", "--field", "connection.port", "--socket", socket], 0),
                (["get", "az-pg", "--socket", socket], 0),
                (["get", "az-pg", "--field", "no.such.field", "--socket", socket], 2),
                (["get", "no-such-credential", "--socket", socket], 1),
                (["get", "Not_A_Name", "--socket", socket], 2),
                (["get", "az-pg", "--socket", missing], 3),
            ]
            for (arguments, status) in lines {
                let (plain, parsed) = Self.spellings(arguments, equalsForm: ["--socket", "--field"])
                #expect(plain != parsed, "\(arguments) has no option to spell differently")
                let viaPlain = try await runCredagent(plain)
                let viaParser = try await runCredagent(parsed)
                #expect(viaPlain.status == status, "\(plain): \(viaPlain.stderr)")
                #expect(viaParser.status == status, "\(parsed): \(viaParser.stderr)")
                #expect(viaPlain.stdout == viaParser.stdout, "\(plain)")
                #expect(viaPlain.stderr == viaParser.stderr, "\(plain)")
            }
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func tokenRDSBehavesTheSameInEitherSpelling() async throws {
        let aws = ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                   "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"]
        let token = ["token", "rds", "--host", "orders.example", "--user", "kong"]
        let lines: [(arguments: [String], status: Int32)] = [
            (token + ["--port", "5432"], 0),
            (token + ["--port", "5432", "--region", "eu-west-1"], 0),
            (token + ["--port", "0"], 2),
            (token + ["--port", "5432", "--region", "Not A Region"], 2),
        ]
        // Keys from a profile's file: read off the main thread, so the plain form waits for it
        // there (it runs on the main thread only until it first waits).
        let profileDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("plain-command-line-\(getpid())")
        try FileManager.default.createDirectory(at: profileDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: profileDirectory) }
        let credentialsFile = profileDirectory.appendingPathComponent("credentials").path
        try "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
            .write(toFile: credentialsFile, atomically: true, encoding: .utf8)
        let profile = ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
                       "AWS_SHARED_CREDENTIALS_FILE": credentialsFile, "AWS_CONFIG_FILE": credentialsFile + ".none",
                       "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"]
        // Each environment, and the key id its tokens must name.
        let environments = [(aws, "AKIDEXAMPLE"), (profile, "AKIDPROFILE")]
        for ((arguments, status), (environment, keyID)) in lines.flatMap({ line in environments.map { (line, $0) } }) {
            let (plain, parsed) = Self.spellings(arguments, equalsForm: ["--host", "--region"])
            let viaPlain = try await runCredagent(plain, environment: environment)
            let viaParser = try await runCredagent(parsed, environment: environment)
            #expect(viaPlain.status == status, "\(plain): \(viaPlain.stderr)")
            #expect(viaParser.status == status, "\(parsed): \(viaParser.stderr)")
            #expect(viaPlain.stderr == viaParser.stderr, "\(plain)")
            // A token is signed at the second it is made: compare what precedes the signing time.
            let unsigned = { (output: String) in output.components(separatedBy: "X-Amz-Date=")[0] }
            #expect(unsigned(viaPlain.stdout) == unsigned(viaParser.stdout), "\(plain)")
            if status == 0 {
                #expect(viaPlain.stdout.hasPrefix("orders.example:5432/?Action=connect&DBUser=kong&"), "\(viaPlain.stdout)")
                #expect(viaPlain.stdout.contains("X-Amz-Credential=\(keyID)%2F"), "\(plain): \(viaPlain.stdout)")
            }
        }
    }
}
