import Foundation
import Synchronization
import Testing
@testable import CloudAuth

/// The credential chain's sources against real files and a real HTTP server on loopback (the
/// container and IMDS endpoints); STS itself is exercised against moto in IntegrationTests.
struct AWSCredentialChainTests {
    /// A settable clock.
    final class Clock: Sendable {
        private let current: Mutex<Date>
        init(_ start: Date) { current = Mutex(start) }
        var now: Date { current.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { current.withLock { $0 += seconds } }
    }

    static let start = Date(timeIntervalSince1970: 1_763_800_000)

    /// An environment with no AWS settings: an empty HOME and IMDS switched off.
    static func bareEnvironment() throws -> [String: String] {
        let home = NSTemporaryDirectory() + "aws-chain-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: home + "/.aws", withIntermediateDirectories: true)
        return ["HOME": home, "AWS_EC2_METADATA_DISABLED": "true"]
    }

    static func chain(_ environment: [String: String], settings: AWSSettings = AWSSettings(),
                      clock: Clock = Clock(start)) -> AWSCredentialChain {
        AWSCredentialChain(settings: settings, http: CurlHTTPClient(), environment: environment, now: { clock.now })
    }

    static func credentialJSON(expiresIn seconds: TimeInterval, from date: Date = start, key: String = "ASIACONTAINER") -> String {
        let expiration = ISO8601DateFormatter().string(from: date.addingTimeInterval(seconds))
        return #"{"AccessKeyId":"\#(key)","SecretAccessKey":"c2VjcmV0","Token":"session/token+=","Expiration":"\#(expiration)"}"#
    }

    static func failure(_ body: () async throws -> AWSCredentials) async -> CloudAuthError? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? CloudAuthError
        }
    }

    // MARK: Environment and profiles

    @Test("environment keys come first and keep their session token")
    func environmentKeys() async throws {
        var env = try Self.bareEnvironment()
        env["AWS_ACCESS_KEY_ID"] = "AKIAENV"
        env["AWS_SECRET_ACCESS_KEY"] = "env-secret"
        env["AWS_SESSION_TOKEN"] = "env-token"
        try "[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n"
            .write(toFile: env["HOME"]! + "/.aws/credentials", atomically: true, encoding: .utf8)
        let credentials = try await Self.chain(env).credentials()
        #expect(credentials.accessKeyID == "AKIAENV")
        #expect(credentials.secretAccessKey.reveal() == "env-secret")
        #expect(credentials.sessionToken?.reveal() == "env-token")
        #expect(credentials.source == "environment")
        #expect(credentials.expiration == nil)
    }

    @Test("half of the environment keys is an error that names the missing variable")
    func partialEnvironment() async throws {
        var env = try Self.bareEnvironment()
        env["AWS_ACCESS_KEY_ID"] = "AKIAENV"
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.code == .invalidInput)
        #expect(error.message.contains("AWS_SECRET_ACCESS_KEY is not"))
        #expect(error.message.contains("imds: disabled by AWS_EC2_METADATA_DISABLED"))
    }

    @Test("named profile from AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE, with its region")
    func namedProfile() async throws {
        var env = try Self.bareEnvironment()
        let directory = env["HOME"]!
        try """
        # comment
        [default]
        aws_access_key_id = AKIADEFAULT
        aws_secret_access_key = default-secret

        [staging]
        aws_access_key_id = AKIASTAGING
        aws_secret_access_key = staging-secret
        aws_session_token = staging-token
        """.write(toFile: directory + "/creds", atomically: true, encoding: .utf8)
        try """
        [default]
        region = us-east-1
        [profile staging]
        region = eu-west-3
        s3 =
          max_concurrent_requests = 20
        [sso-session corp]
        region = us-west-2
        """.write(toFile: directory + "/conf", atomically: true, encoding: .utf8)
        env["AWS_SHARED_CREDENTIALS_FILE"] = directory + "/creds"
        env["AWS_CONFIG_FILE"] = directory + "/conf"
        env["AWS_PROFILE"] = "staging"
        let chain = Self.chain(env)
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyID == "AKIASTAGING")
        #expect(credentials.sessionToken?.reveal() == "staging-token")
        #expect(credentials.source == "profile staging")
        #expect(try await chain.region() == "eu-west-3")

        env["AWS_REGION"] = "ap-south-1"
        #expect(try await Self.chain(env).region() == "ap-south-1")
        #expect(try await Self.chain(env, settings: AWSSettings(region: "sa-east-1")).region() == "sa-east-1")
    }

    @Test("an explicitly chosen profile that does not exist is an error naming both files")
    func missingProfile() async throws {
        var env = try Self.bareEnvironment()
        env["AWS_PROFILE"] = "nope"
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.code == .configuration)
        #expect(error.message.contains("profile nope"))
        #expect(error.message.contains("/.aws/credentials and "))
    }

    @Test("nothing configured: one error listing every source")
    func nothingConfigured() async throws {
        let env = try Self.bareEnvironment()
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.code == .configuration)
        #expect(error.source == "AWS credential chain")
        for part in ["environment:", "web identity:", "profile:", "container:", "imds:"] {
            #expect(error.message.contains(part), "missing \(part) in \(error.message)")
        }
    }

    @Test("an unreadable web identity token file is reported with its path")
    func unreadableWebIdentityToken() async throws {
        var env = try Self.bareEnvironment()
        env["AWS_WEB_IDENTITY_TOKEN_FILE"] = env["HOME"]! + "/missing-token"
        env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/web"
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.code == .io)
        #expect(error.message.contains("missing-token"))
        #expect(error.message.contains("cannot be read"))
    }

    @Test("bad region names are refused, naming where they came from", arguments: ["US-EAST-1", "us_east_1", "useast1", "us-east-", "us-east-1; rm"])
    func badRegion(_ region: String) async throws {
        var env = try Self.bareEnvironment()
        env["AWS_REGION"] = region
        do {
            _ = try await Self.chain(env).region()
            Issue.record("accepted \(region)")
        } catch let error as CloudAuthError {
            #expect(error.code == .invalidInput)
            #expect(error.source == "AWS_REGION")
        }
    }

    // MARK: Container endpoint

    @Test("container endpoint: FULL_URI on loopback, token file re-read on every fetch, cache until 5 minutes remain")
    func containerEndpoint() async throws {
        var env = try Self.bareEnvironment()
        let clock = Clock(Self.start)
        let server = try await LoopbackHTTPServer { request in
            request.path == "/creds" ? .init(200, AWSCredentialChainTests.credentialJSON(expiresIn: 900, from: clock.now))
                                     : .init(404)
        }
        defer { server.stop() }
        let tokenFile = env["HOME"]! + "/container-token"
        try "first-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url + "/creds"
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = tokenFile
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "ignored-when-file-set"
        let chain = Self.chain(env, clock: clock)

        let first = try await chain.credentials()
        #expect(first.source == "container")
        #expect(first.sessionToken?.reveal() == "session/token+=")
        #expect(first.expiration == Self.start.addingTimeInterval(900))
        #expect(server.requests.map { $0.headers["authorization"] } == ["first-token"])

        clock.advance(590)  // 310 s left: still cached
        _ = try await chain.credentials()
        #expect(server.requests.count == 1)

        try "second-token".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        clock.advance(20)  // 290 s left: fetched again, with the new token
        let second = try await chain.credentials()
        #expect(server.requests.map { $0.headers["authorization"] } == ["first-token", "second-token"])
        #expect(second.expiration == clock.now.addingTimeInterval(900))
    }

    @Test("concurrent callers share one fetch")
    func singleFlight() async throws {
        var env = try Self.bareEnvironment()
        let server = try await LoopbackHTTPServer { _ in
            Thread.sleep(forTimeInterval: 0.2)  // the server is slow, so that the callers overlap
            return .init(200, AWSCredentialChainTests.credentialJSON(expiresIn: 3600))
        }
        defer { server.stop() }
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url + "/creds"
        let chain = Self.chain(env)
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try await chain.credentials().accessKeyID } }
            for try await key in group { #expect(key == "ASIACONTAINER") }
        }
        #expect(server.requests.count == 1)
    }

    @Test("container endpoint refuses plain http to other hosts")
    func containerHostNotAllowed() async throws {
        var env = try Self.bareEnvironment()
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://credentials.example.com/creds"
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.code == .invalidInput)
        #expect(error.message.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
        #expect(error.message.contains("not allowed"))
    }

    @Test("container answers that are not credentials", arguments: [
        (200, "not json", "not a JSON object"),
        (200, #"{"AccessKeyId":"ASIA"}"#, "lacks AccessKeyId or SecretAccessKey"),
        (200, #"{"AccessKeyId":"ASIA","SecretAccessKey":"s","Expiration":"tomorrow"}"#, "is not an ISO 8601 time"),
        (403, #"{"code":"AccessDenied","message":"token mismatch"}"#, "HTTP 403: token mismatch"),
    ])
    func containerBadAnswers(_ status: Int, _ body: String, _ expected: String) async throws {
        var env = try Self.bareEnvironment()
        let server = try await LoopbackHTTPServer { _ in .init(status, body) }
        defer { server.stop() }
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url + "/creds"
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.message.contains(expected), "\(error)")
        #expect(error.message.contains("container endpoint \(server.url)/creds"))
    }

    @Test("credentials that have already expired are refused")
    func expiredCredentials() async throws {
        var env = try Self.bareEnvironment()
        let server = try await LoopbackHTTPServer { _ in .init(200, AWSCredentialChainTests.credentialJSON(expiresIn: -60)) }
        defer { server.stop() }
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server.url + "/creds"
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.code == .expired)
        #expect(error.message.contains("expired at"))
    }

    // MARK: Instance metadata

    @Test("IMDSv2: a session token PUT, then role discovery and credentials with the token")
    func instanceMetadata() async throws {
        var env = try Self.bareEnvironment()
        env.removeValue(forKey: "AWS_EC2_METADATA_DISABLED")
        let server = try await LoopbackHTTPServer { request in
            switch (request.method, request.path) {
            case ("PUT", "/latest/api/token"):
                return request.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600" ? .init(200, "imds-session") : .init(400)
            case (_, _) where request.headers["x-aws-ec2-metadata-token"] != "imds-session":
                return .init(401)
            case ("GET", "/latest/meta-data/iam/security-credentials/"):
                return .init(200, "web-role\n")
            case ("GET", "/latest/meta-data/iam/security-credentials/web-role"):
                return .init(200, AWSCredentialChainTests.credentialJSON(expiresIn: 21_600, key: "ASIAIMDS")
                    .replacingOccurrences(of: "{", with: #"{"Code":"Success","Type":"AWS-HMAC","#))
            case ("GET", "/latest/meta-data/placement/region"):
                return .init(200, "eu-north-1")
            default:
                return .init(404)
            }
        }
        defer { server.stop() }
        let chain = Self.chain(env, settings: AWSSettings(imdsEndpoint: server.url))
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyID == "ASIAIMDS")
        #expect(credentials.source == "imds")
        #expect(credentials.expiration == Self.start.addingTimeInterval(21_600))
        #expect(try await chain.region() == "eu-north-1")
        #expect(server.requests.map { "\($0.method) \($0.path)" }.prefix(3) == [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/web-role",
        ])
    }

    @Test("IMDS without a session token fails; there is no IMDSv1 fallback")
    func noIMDSv1Fallback() async throws {
        var env = try Self.bareEnvironment()
        env.removeValue(forKey: "AWS_EC2_METADATA_DISABLED")
        let server = try await LoopbackHTTPServer { request in
            request.method == "PUT" ? .init(403) : .init(200, "v1-role")
        }
        defer { server.stop() }
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url + "/"
        let error = try #require(await Self.failure { try await Self.chain(env).credentials() })
        #expect(error.code == .rejected)
        #expect(error.message.contains("IMDSv1 is not used"))
        #expect(server.requests.map(\.method) == ["PUT"])
    }
}
