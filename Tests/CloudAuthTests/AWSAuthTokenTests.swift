import Foundation
import TestSupport
import Testing
@testable import CloudAuth

/// RDS, ElastiCache and MemoryDB tokens against botocore, byte for byte: the expectations are
/// generated at test time by `scripts/oracle/aws_tokens.py` with the same keys and a frozen clock.
struct AWSAuthTokenTests {
    static let oracleScript = ChildProcess.packageRoot + "/scripts/oracle/aws_tokens.py"
    static let keys = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                     secretAccessKey: Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                                     source: "test")
    static let temporaryKeys = AWSCredentials(accessKeyID: "ASIAIOSFODNN7EXAMPLE",
                                              secretAccessKey: Secret("je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
                                              sessionToken: Secret("IQoJb3JpZ2luX2VjEAk//////////wEaCXVzLWVhc3QtMSJH+abc/def=="),
                                              expiration: Date(timeIntervalSince1970: 1_763_000_000), source: "test")

    /// One token to make, described for both implementations.
    struct Case: Sendable, CustomTestStringConvertible {
        enum Kind: Sendable { case rds(host: String, port: Int), cache(name: String, serverless: Bool, service: ElastiCacheAuthToken.Service) }
        var kind: Kind
        var user: String
        var region: String
        var temporary: Bool
        var time: Int

        var testDescription: String { "\(kind) \(user) \(region)\(temporary ? " temporary" : "")" }

        var credentials: AWSCredentials { temporary ? AWSAuthTokenTests.temporaryKeys : AWSAuthTokenTests.keys }

        func swiftToken() -> SignedToken {
            let date = Date(timeIntervalSince1970: TimeInterval(time))
            switch kind {
            case let .rds(host, port):
                return RDSAuthToken.make(host: host, port: port, user: user, region: region, credentials: credentials, at: date)
            case let .cache(name, serverless, service):
                return ElastiCacheAuthToken.make(cacheName: name, user: user, serverless: serverless, service: service,
                                                 region: region, credentials: credentials, at: date)
            }
        }

        var oracleInput: [String: Any] {
            var input: [String: Any] = ["user": user, "region": region, "time": time,
                                        "access_key_id": credentials.accessKeyID,
                                        "secret_access_key": credentials.secretAccessKey.reveal()]
            if let token = credentials.sessionToken { input["session_token"] = token.reveal() }
            switch kind {
            case let .rds(host, port):
                input["kind"] = "rds"; input["host"] = host; input["port"] = port
            case let .cache(name, serverless, service):
                input["kind"] = service.rawValue; input["cache_name"] = name; input["serverless"] = serverless
            }
            return input
        }
    }

    static let cases: [Case] = [
        Case(kind: .rds(host: "orders.abc123.us-east-1.rds.amazonaws.com", port: 5432), user: "kong", region: "us-east-1", temporary: false, time: 1_763_804_400),
        Case(kind: .rds(host: "orders.abc123.eu-west-1.rds.amazonaws.com", port: 3306), user: "app_user", region: "eu-west-1", temporary: true, time: 1_763_804_401),
        Case(kind: .rds(host: "Mixed.Case.Example.com", port: 443), user: "user with space+plus/slash", region: "ap-southeast-2", temporary: true, time: 1_700_000_000),
        Case(kind: .rds(host: "127.0.0.1", port: 80), user: "Ünïcødé", region: "us-gov-west-1", temporary: false, time: 951_782_400),
        Case(kind: .cache(name: "sessions-cache", serverless: false, service: .elasticache), user: "kong", region: "us-east-1", temporary: false, time: 1_763_804_400),
        Case(kind: .cache(name: "sessions-cache", serverless: true, service: .elasticache), user: "kong", region: "us-west-2", temporary: true, time: 1_763_804_400),
        Case(kind: .cache(name: "My-Cluster", serverless: false, service: .memorydb), user: "iam-user@x", region: "eu-central-1", temporary: true, time: 1_735_689_599),
        Case(kind: .cache(name: "serverless-memdb", serverless: true, service: .memorydb), user: "a=b&c", region: "cn-north-1", temporary: false, time: 1_767_225_600),
    ]

    @Test("tokens are byte-identical to botocore's", .enabled("python3 with botocore is not installed") { await ChildProcess.pythonHas("botocore") })
    func matchesBotocore() async throws {
        let input = try JSONSerialization.data(withJSONObject: Self.cases.map(\.oracleInput))
        let result = try await ChildProcess.python([Self.oracleScript], stdin: input)
        try #require(result.status == 0, "oracle failed: \(result.stderr)")
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String])
        try #require(expected.count == Self.cases.count)
        for (testCase, want) in zip(Self.cases, expected) {
            #expect(testCase.swiftToken().token.reveal() == want, "\(testCase.testDescription)")
        }
    }

    @Test("a token lives 900 s, never longer than the keys that signed it")
    func expiry() {
        let now = Date(timeIntervalSince1970: 1_762_999_500)  // 500 s before temporaryKeys expire
        let longTerm = RDSAuthToken.make(host: "h", port: 5432, user: "u", region: "us-east-1", credentials: Self.keys, at: now)
        #expect(longTerm.issuedAt == now)
        #expect(longTerm.expiresAt == now.addingTimeInterval(900))
        let shortLived = ElastiCacheAuthToken.make(cacheName: "c", user: "u", region: "us-east-1",
                                                   credentials: Self.temporaryKeys, at: now)
        #expect(shortLived.expiresAt == Self.temporaryKeys.expiration)
    }

    @Test("a token prints as <redacted>")
    func redacted() {
        let token = RDSAuthToken.make(host: "h", port: 5432, user: "u", region: "us-east-1", credentials: Self.temporaryKeys, at: Date())
        #expect("\(token)".contains("<redacted>"))
        #expect(!"\(token)".contains("X-Amz-Signature"))
        #expect(!"\(Self.temporaryKeys)".contains(Self.temporaryKeys.secretAccessKey.reveal()))
    }
}
