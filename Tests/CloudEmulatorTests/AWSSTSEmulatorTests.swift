import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// The emulator's STS with real clients: boto3 (its own credential chain, signer and XML parser)
/// and credagent's chain, and with requests signed wrong in every way AWS refuses.
struct AWSSTSEmulatorTests {
    static func startWithStateDirectory() async throws -> CloudEmulator {
        var configuration = CloudEmulator.Configuration()
        configuration.stateDirectory = NSTemporaryDirectory() + "credagent-emulator-test-" + UUID().uuidString.prefix(8)
        return try await CloudEmulator.start(configuration)
    }

    /// Runs a boto3 script with `environment` (plus a HOME without AWS config), returning its JSON output.
    static func boto3(_ script: String, environment: [String: String]) async throws -> [String: Any] {
        var env = environment
        env["HOME"] = NSTemporaryDirectory() + "no-aws-home"
        env["AWS_CONFIG_FILE"] = "/dev/null"
        env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        let program = """
            import boto3, botocore, json, os
            out = {}
            def error_code(call):
                try:
                    call()
                    return None
                except botocore.exceptions.ClientError as e:
                    return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
            \(script)
            print(json.dumps(out, default=str))
            """
        let result = try await ChildProcess.python(["-c", program], environment: env)
        try #require(result.status == 0, "boto3 failed: \(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    @Test("boto3 takes keys from the IMDSv2 endpoint and calls STS with them", .enabled("boto3 is not installed") { await ChildProcess.pythonHas("boto3") })
    func boto3WithInstanceKeys() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let out = try await Self.boto3("""
                session = boto3.session.Session()
                out["method"] = session.get_credentials().method
                sts = session.client("sts")
                out["caller"] = sts.get_caller_identity()
                assumed = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/gateway", RoleSessionName="kong", DurationSeconds=900)
                out["assumed_arn"] = assumed["AssumedRoleUser"]["Arn"]
                keys = assumed["Credentials"]
                again = boto3.client("sts", aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                                     aws_session_token=keys["SessionToken"]).get_caller_identity()
                out["chained_arn"] = again["Arn"]
                frozen = session.get_credentials().get_frozen_credentials()
                forged = boto3.client("sts", aws_access_key_id=frozen.access_key, aws_secret_access_key="not-the-secret",
                                      aws_session_token=frozen.token)
                out["wrong_secret"] = error_code(forged.get_caller_identity)
                stranger = boto3.client("sts", aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x")
                out["unknown_key"] = error_code(stranger.get_caller_identity)
                out["other_account"] = error_code(lambda: sts.assume_role(RoleArn="arn:aws:iam::999999999999:role/x", RoleSessionName="kong"))
                out["not_a_role"] = error_code(lambda: sts.assume_role(RoleArn="arn:aws:iam::123456789012:user/someone", RoleSessionName="kong"))
                """, environment: emulator.environment(for: .awsIMDS))
            #expect(out["method"] as? String == "iam-role")
            let caller = try #require(out["caller"] as? [String: Any])
            #expect(caller["Arn"] as? String == "arn:aws:sts::123456789012:assumed-role/credagent-instance-role/i-0c0ffee0c0ffee000")
            #expect(caller["Account"] as? String == "123456789012")
            #expect((caller["UserId"] as? String)?.hasPrefix("AROA") == true)
            #expect(out["assumed_arn"] as? String == "arn:aws:sts::123456789012:assumed-role/gateway/kong")
            #expect(out["chained_arn"] as? String == "arn:aws:sts::123456789012:assumed-role/gateway/kong")
            #expect(out["wrong_secret"] as? [AnyHashable] == ["SignatureDoesNotMatch", 403])
            #expect(out["unknown_key"] as? [AnyHashable] == ["InvalidClientTokenId", 403])
            #expect(out["other_account"] as? [AnyHashable] == ["AccessDenied", 403])
            #expect(out["not_a_role"] as? [AnyHashable] == ["ValidationError", 400])
            #expect(emulator.requestCount(.awsSTS) == 7)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test("boto3 takes keys from the container credentials endpoint (ECS, EKS Pod Identity)", .enabled("boto3 is not installed") { await ChildProcess.pythonHas("boto3") })
    func boto3WithContainerKeys() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            var environment = emulator.environment(for: .awsContainer)
            environment["AWS_EC2_METADATA_DISABLED"] = "true"
            let out = try await Self.boto3("""
                session = boto3.session.Session()
                out["method"] = session.get_credentials().method
                out["arn"] = session.client("sts").get_caller_identity()["Arn"]
                """, environment: environment)
            #expect(out["method"] as? String == "container-role")
            #expect(out["arn"] as? String == "arn:aws:sts::123456789012:assumed-role/credagent-instance-role/credagent-task")
            #expect(emulator.requestCount(.awsContainerCredentials) == 1)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test("boto3's web identity provider assumes the role with the projected token", .enabled("boto3 is not installed") { await ChildProcess.pythonHas("boto3") })
    func boto3WithWebIdentity() async throws {
        let emulator = try await Self.startWithStateDirectory()
        try await withCleanup {
            let tokenFile = try #require(emulator.awsWebIdentityTokenFile)
            let out = try await Self.boto3("""
                session = boto3.session.Session()
                out["method"] = session.get_credentials().method
                out["arn"] = session.client("sts").get_caller_identity()["Arn"]
                anonymous = boto3.client("sts", config=botocore.config.Config(signature_version=botocore.UNSIGNED))
                out["wrong_audience"] = error_code(lambda: anonymous.assume_role_with_web_identity(
                    RoleArn=os.environ["AWS_ROLE_ARN"], RoleSessionName="x1", WebIdentityToken=os.environ["AZURE_TOKEN"]))
                out["not_a_token"] = error_code(lambda: anonymous.assume_role_with_web_identity(
                    RoleArn=os.environ["AWS_ROLE_ARN"], RoleSessionName="x1", WebIdentityToken="e30.e30.c2ln"))
                """, environment: emulator.environment(for: .awsWebIdentity(tokenFile: tokenFile))
                    .merging(["AZURE_TOKEN": try emulator.federatedToken()]) { $1 })
            #expect(out["method"] as? String == "assume-role-with-web-identity")
            #expect(out["arn"] as? String == "arn:aws:sts::123456789012:assumed-role/credagent-pod-role/credagent")
            #expect(out["wrong_audience"] as? [AnyHashable] == ["InvalidIdentityToken", 400])
            #expect(out["not_a_token"] as? [AnyHashable] == ["InvalidIdentityToken", 400])
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test("credagent's chain: web identity through the emulator's STS, and the RDS token it signs verifies")
    func chainWithWebIdentity() async throws {
        let emulator = try await Self.startWithStateDirectory()
        try await withCleanup {
            var environment = emulator.environment(for: .awsWebIdentity(tokenFile: try #require(emulator.awsWebIdentityTokenFile)))
            environment["HOME"] = NSTemporaryDirectory() + "no-aws-home"
            let chain = AWSCredentialChain(settings: AWSSettings(), http: CurlHTTPClient(), environment: environment)
            let keys = try await chain.credentials()
            let token = RDSAuthToken.make(host: "orders.local", port: 5432, user: "kong", region: "us-east-1",
                                          credentials: keys, at: Date())
            let verdict = emulator.verify(token.token.reveal(), host: "orders.local", port: 5432, user: "kong")
            #expect(verdict.isValid, "\(verdict)")
            #expect(verdict.kind == "rds")
            #expect(verdict.principal == "arn:aws:sts::123456789012:assumed-role/credagent-pod-role/credagent")
        } cleanup: {
            try? await emulator.stop()
        }
    }

    /// Signs `GetCallerIdentity` with `keys` at `date` and sends it.
    static func getCallerIdentity(_ emulator: CloudEmulator, keys: AWSCredentials, at date: Date = Date()) async throws -> HTTPResponse {
        let request = SigV4Request(method: "POST", url: try EndpointURL(parsing: emulator.awsBaseURL + "/"),
                                   headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"],
                                   body: Array("Action=GetCallerIdentity&Version=2011-06-15".utf8))
        let signed = SigV4Signer(credentials: keys, region: "us-east-1", service: "sts").sign(request, at: date)
        return try await CurlHTTPClient().execute(HTTPRequest(method: "POST", url: emulator.awsBaseURL + "/",
                                                               headers: signed.headers, body: signed.body))
    }

    @Test("STS refuses expired keys, stale signatures and unsigned calls with AWS's XML errors")
    func refusals() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            var environment = emulator.environment(for: .awsIMDS)
            environment["HOME"] = NSTemporaryDirectory() + "no-aws-home"
            let keys = try await AWSCredentialChain(settings: AWSSettings(), http: CurlHTTPClient(), environment: environment).credentials()

            let fine = try await Self.getCallerIdentity(emulator, keys: keys)
            #expect(fine.status == 200)
            #expect(fine.bodyText.contains("<GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/"))

            let stale = try await Self.getCallerIdentity(emulator, keys: keys, at: Date().addingTimeInterval(-1000))
            #expect(stale.status == 403)
            #expect(stale.bodyText.contains("<Code>SignatureDoesNotMatch</Code><Message>Signature expired: "))
            #expect(stale.bodyText.hasPrefix("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"))

            // The chain refuses expired keys; ask IMDS directly, as a client that ignores Expiration would.
            emulator.inject(.expiredToken, at: .awsIMDSCredentials, times: 1)
            let http = CurlHTTPClient()
            let session = try await http.execute(HTTPRequest(method: "PUT", url: emulator.awsBaseURL + "/latest/api/token",
                                                             headers: ["X-aws-ec2-metadata-token-ttl-seconds": "60"])).bodyText
            let document = try await http.execute(HTTPRequest(
                url: emulator.awsBaseURL + "/latest/meta-data/iam/security-credentials/" + emulator.configuration.awsRoleName,
                headers: ["X-aws-ec2-metadata-token": session]))
            let fields = try #require(try JSONSerialization.jsonObject(with: Data(document.body)) as? [String: String])
            let expiredKeys = AWSCredentials(accessKeyID: try #require(fields["AccessKeyId"]),
                                             secretAccessKey: Secret(try #require(fields["SecretAccessKey"])),
                                             sessionToken: Secret(try #require(fields["Token"])), source: "test")
            let expired = try await Self.getCallerIdentity(emulator, keys: expiredKeys)
            #expect(expired.bodyText.contains("<Code>ExpiredToken</Code>"))

            let unsigned = try await CurlHTTPClient().execute(HTTPRequest(method: "POST", url: emulator.awsBaseURL + "/",
                                                                           body: Array("Action=GetCallerIdentity".utf8)))
            #expect(unsigned.status == 403)
            #expect(unsigned.bodyText.contains("<Code>MissingAuthenticationToken</Code>"))
            #expect(!expired.bodyText.contains(expiredKeys.secretAccessKey.reveal()))
        } cleanup: {
            try? await emulator.stop()
        }
    }
}
