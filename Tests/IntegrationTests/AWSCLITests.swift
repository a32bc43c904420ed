import CloudAuth
import Foundation
import TestSupport
import Testing

/// `credagent token rds|elasticache|memorydb|vault-aws` run as a process: stdout holds the token
/// and nothing else, the token is byte-identical to botocore's for the same signing second, exit
/// codes follow the CLI contract, and secrets stay out of stderr.
struct AWSCLITests {
    static let secret = "cli/secret+key=EXAMPLEKEY0123456789abcd"

    static func environment(_ extra: [String: String] = [:]) throws -> [String: String] {
        var env = ["HOME": try Peers.scratchDirectory("aws-cli-home"), "AWS_EC2_METADATA_DISABLED": "true",
                   "AWS_ACCESS_KEY_ID": "AKIACLIEXAMPLE", "AWS_SECRET_ACCESS_KEY": secret,
                   "AWS_SESSION_TOKEN": "cli-session/token+=="]
        env.merge(extra) { _, new in new }
        return env
    }

    /// botocore's token for `testCase`, signed at the second the CLI's token says it was signed.
    static func botocoreToken(_ testCase: [String: any Sendable], signedAt token: String) async throws -> String {
        let stamp = try #require(token.split(separator: "&").first { $0.hasPrefix("X-Amz-Date=") }?.dropFirst("X-Amz-Date=".count))
        var components = DateComponents()
        components.timeZone = TimeZone(identifier: "UTC")
        let digits = Array(stamp)
        func number(_ range: Range<Int>) -> Int { Int(String(digits[range]))! }
        components.year = number(0..<4); components.month = number(4..<6); components.day = number(6..<8)
        components.hour = number(9..<11); components.minute = number(11..<13); components.second = number(13..<15)
        let time = try #require(Calendar(identifier: .gregorian).date(from: components))
        var input: [String: Any] = testCase.mapValues { $0 as Any }
        input["time"] = Int(time.timeIntervalSince1970)
        input["access_key_id"] = "AKIACLIEXAMPLE"
        input["secret_access_key"] = secret
        input["session_token"] = "cli-session/token+=="
        let script = ChildProcess.packageRoot + "/scripts/oracle/aws_tokens.py"
        let result = try await ChildProcess.python([script], stdin: try JSONSerialization.data(withJSONObject: [input]))
        try #require(result.status == 0, "oracle failed: \(result.stderr)")
        return try #require((try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String])?.first)
    }

    @Test("token rds / elasticache / memorydb print only the token, byte-identical to botocore's",
          .enabled("python3 with botocore is not installed") { await ChildProcess.pythonHas("botocore") }, arguments: [
        (["token", "rds", "--host", "orders.abc.us-east-1.rds.amazonaws.com", "--port", "5432", "--user", "kong"],
         ["kind": "rds", "host": "orders.abc.us-east-1.rds.amazonaws.com", "port": 5432, "user": "kong", "region": "us-west-2"] as [String: any Sendable]),
        (["token", "elasticache", "--cache-name", "sessions", "--user", "kong user", "--serverless", "--region", "eu-west-1"],
         ["kind": "elasticache", "cache_name": "sessions", "user": "kong user", "serverless": true, "region": "eu-west-1"]),
        (["token", "memorydb", "--cache-name", "memdb-prod", "--user", "app"],
         ["kind": "memorydb", "cache_name": "memdb-prod", "user": "app", "serverless": false, "region": "us-west-2"]),
    ])
    func tokensMatchBotocore(_ arguments: [String], _ oracleCase: [String: any Sendable]) async throws {
        let result = try await runCredagent(arguments, environment: try Self.environment(["AWS_REGION": "us-west-2"]))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.isEmpty)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines[1].isEmpty, "stdout must be the token and a newline")
        let token = String(lines[0])
        #expect(token == (try await Self.botocoreToken(oracleCase, signedAt: token)))
    }

    @Test("token vault-aws prints login JSON that moto's STS accepts", .enabled(if: Peers.moto != nil, "CREDAGENT_TEST_MOTO is not set"))
    func vaultAWS() async throws {
        let moto = try #require(Peers.moto)
        var env = try Self.environment(["AWS_ENDPOINT_URL_STS": moto, "AWS_REGION": "us-east-1"])
        env["AWS_ACCESS_KEY_ID"] = Peers.env("CREDAGENT_TEST_MOTO_ACCESS_KEY_ID")
        env["AWS_SECRET_ACCESS_KEY"] = Peers.env("CREDAGENT_TEST_MOTO_SECRET_ACCESS_KEY")
        env.removeValue(forKey: "AWS_SESSION_TOKEN")
        let result = try await runCredagent(["token", "vault-aws", "--role", "kong", "--server-id", "vault.example.com"], environment: env)
        #expect(result.status == 0, "\(result.stderr)")
        let payload = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: String])
        #expect(Set(payload.keys) == ["iam_http_request_method", "iam_request_url", "iam_request_body", "iam_request_headers", "role"])
        let response = try await AWSMotoTests.replay(payload)
        #expect(response.status == 200)
        #expect(response.bodyText.contains("user/credagent-test"))
    }

    @Test("exit codes: 2 for usage and configuration, 1 for a failed fetch; secrets never on stderr")
    func exitCodes() async throws {
        let badPort = try await runCredagent(["token", "rds", "--host", "h", "--port", "70000", "--user", "u", "--region", "us-east-1"],
                                             environment: try Self.environment())
        #expect(badPort.status == 2)
        #expect(badPort.stdout.isEmpty)
        #expect(badPort.stderr.contains("--port"))

        let badRegion = try await runCredagent(["token", "rds", "--host", "h", "--port", "5432", "--user", "u", "--region", "Mars"],
                                               environment: try Self.environment())
        #expect(badRegion.status == 2)
        #expect(badRegion.stdout.isEmpty)
        #expect(badRegion.stderr.contains("'Mars' is not an AWS region name"))

        var nothing = try Self.environment()
        nothing.removeValue(forKey: "AWS_ACCESS_KEY_ID")
        nothing.removeValue(forKey: "AWS_SECRET_ACCESS_KEY")
        let noCredentials = try await runCredagent(["token", "elasticache", "--cache-name", "c", "--user", "u", "--region", "us-east-1"],
                                                   environment: nothing)
        #expect(noCredentials.status == 2)
        #expect(noCredentials.stdout.isEmpty)
        #expect(noCredentials.stderr.contains("no source yielded credentials"))

        var unreachable = nothing
        unreachable["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:9/creds"  // discard port: refused
        let failedFetch = try await runCredagent(["token", "memorydb", "--cache-name", "c", "--user", "u", "--region", "us-east-1"],
                                                 environment: unreachable)
        #expect(failedFetch.status == 1)
        #expect(failedFetch.stdout.isEmpty)
        #expect(failedFetch.stderr.contains("container endpoint http://127.0.0.1:9/creds"))

        for result in [badPort, badRegion, noCredentials, failedFetch] {
            #expect(!result.stderr.contains(Self.secret))
            #expect(!result.stderr.contains("cli-session/token"))
        }
    }
}
