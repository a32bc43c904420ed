import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// `credagent doctor` as a process, against the cloud emulator playing all three clouds.
@Suite(.serialized) struct DoctorTests {
    /// A config that uses every cloud, its socket in `directory`/run.
    private static func writeConfig(in directory: String) throws -> String {
        let path = directory + "/agent.yaml"
        try """
            socket: {path: \(directory)/run/agent.sock}
            credentials:
              - {name: orders-db, kind: postgres, provider: aws, host: db.example, port: 5432, user: kong, database: kong}
              - {name: az-pg, kind: postgres, provider: azure, host: 127.0.0.1, user: kong-identity, sslmode: disable}
              - {name: gcp-redis, kind: redis, provider: gcp, host: 127.0.0.1, tls: false}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o750])
        return path
    }

    /// The emulator's AWS (IMDS), Azure (IMDS) and GCP (metadata server) endpoints, and no AWS
    /// profile files, so that the chains find exactly those.
    private static func environment(_ emulator: CloudEmulator) -> [String: String] {
        emulator.environment(for: .awsIMDS).merging(emulator.environment(for: .azureIMDS)) { $1 }
            .merging(emulator.environment(for: .gcpMetadata)) { $1 }
            .merging(["AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config"]) { $1 }
    }

    private static func clouds(_ output: String) throws -> [String: [String: Any]] {
        let report = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(output)")
        let rows = try #require(report["clouds"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: rows.map { ($0["cloud"] as? String ?? "?", $0) })
    }

    private static func files(_ output: String) throws -> [String: [String: Any]] {
        let report = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let rows = try #require(report["files"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: rows.map { ($0["role"] as? String ?? "?", $0) })
    }

    @Test func everyCloudsIdentityItsLinkAndTheClockWithNoSecretInTheOutput() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let directory = try Peers.scratchDirectory("doctor-ok").replacingOccurrences(of: "//", with: "/")
        let config = try Self.writeConfig(in: directory)
        let env = Self.environment(emulator)

        let json = try await runCredagent(["doctor", "--config", config, "--json"], environment: env)
        #expect(json.status == 0, "\(json.stdout)\(json.stderr)")
        let clouds = try Self.clouds(json.stdout)
        #expect(clouds["aws"]?["status"] as? String == "ok")
        #expect(clouds["aws"]?["link"] as? String == "imds")
        let arn = "arn:aws:sts::\(emulator.configuration.awsAccountID):assumed-role/\(emulator.configuration.awsRoleName)/"
        #expect((clouds["aws"]?["identity"] as? String)?.hasPrefix(arn) == true, "\(clouds["aws"] ?? [:])")
        #expect(clouds["azure"]?["link"] as? String == "imds")
        #expect((clouds["azure"]?["identity"] as? String)?.contains("client \(emulator.configuration.systemIdentity.clientID)") == true)
        #expect((clouds["azure"]?["identity"] as? String)?.contains("object \(emulator.configuration.systemIdentity.objectID)") == true)
        #expect(clouds["gcp"]?["link"] as? String == "metadata server")
        #expect(clouds["gcp"]?["identity"] as? String == emulator.configuration.gcpServiceAccountEmail)
        for cloud in ["aws", "azure", "gcp"] {
            let skew = try #require(clouds[cloud]?["clock_skew_seconds"] as? Int, "\(cloud): no skew measured")
            #expect(abs(skew) <= 2, "\(cloud): skew \(skew) s against an emulator on this machine")
            #expect((clouds[cloud]?["clock_endpoint"] as? String)?.hasPrefix("http://127.0.0.1:") == true)
        }
        let files = try Self.files(json.stdout)
        #expect(files["config"]?["status"] as? String == "ok")
        #expect(files["config"]?["mode"] as? String == "0600")
        #expect(files["socket directory"]?["status"] as? String == "ok")
        #expect(files["socket"]?["status"] as? String == "warning", "no agent runs: no socket yet")

        let table = try await runCredagent(["doctor", "--config", config], environment: env)
        #expect(table.status == 0)
        #expect(table.stdout.hasPrefix("CLOUD  STATUS"))
        #expect(table.stdout.contains(arn))
        #expect(table.stdout.contains("socket \(directory)/run/agent.sock: no socket here\n  fix: start the agent"))

        // Tokens and keys were issued for both runs, and none of them is in what doctor printed.
        #expect(emulator.requestCount(.awsIMDSCredentials) >= 2)
        #expect(emulator.requestCount(.azureIMDSToken) >= 2)
        #expect(emulator.requestCount(.gcpMetadataToken) >= 2)
        let words = (json.stdout + json.stderr + table.stdout + table.stderr)
            .split { !($0.isLetter || $0.isNumber || "._-/+=".contains($0)) }.map(String.init)
        #expect(words.count > 20)
        #expect(words.filter { emulator.wasIssued($0) }.isEmpty, "doctor printed an issued secret")
        try await emulator.stop()
    }

    @Test func wrongPermissionsAnUnreachableEndpointAndASkewedClockAreFailuresWithTheirFix() async throws {
        var settings = CloudEmulator.Configuration()
        settings.dateHeaderOffset = 600
        let emulator = try await CloudEmulator.start(settings)
        let directory = try Peers.scratchDirectory("doctor-bad").replacingOccurrences(of: "//", with: "/")
        let config = try Self.writeConfig(in: directory)
        chmod(config, 0o666)
        chmod(directory + "/run", 0o777)
        var env = Self.environment(emulator)
        env["IMDS_ENDPOINT"] = "http://127.0.0.1:1"   // Azure: nothing listens there

        let json = try await runCredagent(["doctor", "--config", config, "--json"], environment: env)
        #expect(json.status == 1, "\(json.stdout)\(json.stderr)")
        let clouds = try Self.clouds(json.stdout)
        let azure = try #require(clouds["azure"])
        #expect(azure["status"] as? String == "failed")
        #expect((azure["error"] as? String)?.contains("127.0.0.1:1") == true, "\(azure)")
        #expect((azure["remedy"] as? String)?.contains("check that the endpoint runs and the address is right") == true, "\(azure)")
        let gcp = try #require(clouds["gcp"])
        #expect(gcp["status"] as? String == "failed", "a clock 10 minutes off fails: \(gcp)")
        #expect(abs((gcp["clock_skew_seconds"] as? Int ?? 0) - 600) <= 2)
        #expect((gcp["error"] as? String)?.contains("this machine's clock is 600 s behind") == true, "\(gcp)")
        #expect((gcp["remedy"] as? String)?.contains("synchronise the clock") == true)
        let files = try Self.files(json.stdout)
        #expect(files["config"]?["status"] as? String == "failed")
        #expect((files["config"]?["problem"] as? String)?.contains("is writable by every user (mode 0666)") == true, "\(files)")
        #expect(files["config"]?["remedy"] as? String == "chmod o-w \(config)")
        #expect(files["socket directory"]?["status"] as? String == "failed")
        #expect(files["socket directory"]?["remedy"] as? String == "chmod o-w \(directory)/run")

        let table = try await runCredagent(["doctor", "--config", config], environment: env)
        #expect(table.status == 1)
        #expect(table.stdout.contains("config \(config): is writable by every user (mode 0666), so another user could change it\n  fix: chmod o-w \(config)"), "\(table.stdout)")

        let missing = try await runCredagent(["doctor", "--config", directory + "/nope.yaml"], environment: env)
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("no such file"))
        try await emulator.stop()
    }
}
