import Foundation
import TestSupport
import Testing
@testable import CloudAuth

/// The verifier against signatures botocore made (header-signed STS requests and presigned
/// connect tokens, from `scripts/oracle/aws_tokens.py`), and against every way a request can go
/// wrong: another secret, a changed byte, a stale or future time, an unknown or expired key, a
/// missing or foreign session token.
struct SigV4VerifierTests {
    typealias Oracle = AWSAuthTokenTests

    static func verifier(_ keys: AWSCredentials...) -> SigV4Verifier {
        let known = Dictionary(uniqueKeysWithValues: keys.map { ($0.accessKeyID, $0) })
        return SigV4Verifier { id in
            known[id].map { SigV4Verifier.IssuedKey(secretAccessKey: $0.secretAccessKey, sessionToken: $0.sessionToken,
                                                    expiresAt: $0.expiration) }
        }
    }

    static let signingTime = 1_762_990_000  // before temporaryKeys expire

    /// A request botocore signed in its headers, as it goes over the wire.
    struct SignedRequest {
        var method: String
        var path: String
        var query: String
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    static func botocoreSTSRequest(_ keys: AWSCredentials, action: String = "GetCallerIdentity",
                                   parameters: [String: String] = [:]) async throws -> SignedRequest {
        var input: [String: Any] = ["kind": "sts-request", "action": action, "parameters": parameters,
                                    "endpoint": "http://127.0.0.1:4566/", "region": "us-east-1", "time": signingTime,
                                    "access_key_id": keys.accessKeyID, "secret_access_key": keys.secretAccessKey.reveal()]
        if let token = keys.sessionToken { input["session_token"] = token.reveal() }
        let result = try await ChildProcess.python([Oracle.oracleScript], stdin: try JSONSerialization.data(withJSONObject: [input]))
        try #require(result.status == 0, "oracle failed: \(result.stderr)")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        let object = try #require(list.first)
        var headers = HTTPHeaders()
        for pair in try #require(object["headers"] as? [[String]]) { headers.add(pair[0], pair[1]) }
        return SignedRequest(method: try #require(object["method"] as? String), path: try #require(object["path"] as? String),
                             query: object["query"] as? String ?? "", headers: headers,
                             body: Array(try #require(object["body"] as? String).utf8))
    }

    static func check(_ request: SignedRequest, with verifier: SigV4Verifier, at seconds: Int = signingTime + 30)
        -> Result<SigV4Verifier.Signature, SigV4Verifier.Rejection> {
        verifier.verify(method: request.method, path: request.path, query: request.query, headers: request.headers,
                        body: request.body, now: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    static func code(_ result: Result<SigV4Verifier.Signature, SigV4Verifier.Rejection>) -> String? {
        if case let .failure(rejection) = result { return rejection.code }
        return nil
    }

    @Test("botocore's header signatures verify, for long-term and temporary keys",
          .enabled("python3 with botocore is not installed") { await ChildProcess.pythonHas("botocore") })
    func headerSignaturesFromBotocore() async throws {
        for keys in [Oracle.keys, Oracle.temporaryKeys] {
            let request = try await Self.botocoreSTSRequest(keys, action: "AssumeRole",
                                                      parameters: ["RoleArn": "arn:aws:iam::123456789012:role/a b", "RoleSessionName": "s"])
            let signature = try Self.check(request, with: Self.verifier(keys)).get()
            #expect(signature.accessKeyID == keys.accessKeyID)
            #expect(signature.service == "sts" && signature.region == "us-east-1")
            #expect(signature.signedAt == Date(timeIntervalSince1970: TimeInterval(Self.signingTime)))
        }
    }

    @Test("a changed body, header, secret or session token is refused",
          .enabled("python3 with botocore is not installed") { await ChildProcess.pythonHas("botocore") })
    func tamperedRequests() async throws {
        let keys = Oracle.temporaryKeys
        let request = try await Self.botocoreSTSRequest(keys)
        var body = request
        body.body = Array("Action=GetCallerIdentity&Version=2011-06-16".utf8)
        #expect(Self.code(Self.check(body, with: Self.verifier(keys))) == "SignatureDoesNotMatch")
        var host = request
        host.headers.replace("Host", "127.0.0.1:4567")
        #expect(Self.code(Self.check(host, with: Self.verifier(keys))) == "SignatureDoesNotMatch")
        var otherSecret = keys
        otherSecret.secretAccessKey = Secret("another secret")
        #expect(Self.code(Self.check(request, with: Self.verifier(otherSecret))) == "SignatureDoesNotMatch")
        var otherToken = request
        otherToken.headers.replace("X-Amz-Security-Token", "forged")
        #expect(Self.code(Self.check(otherToken, with: Self.verifier(keys))) == "InvalidClientTokenId")
        var noToken = request
        noToken.headers = HTTPHeaders()
        for field in request.headers.fields where field.name != "X-Amz-Security-Token" { noToken.headers.add(field.name, field.value) }
        #expect(Self.code(Self.check(noToken, with: Self.verifier(keys))) == "InvalidClientTokenId")
        #expect(Self.code(Self.check(request, with: Self.verifier(Oracle.keys))) == "InvalidClientTokenId")
        var unsigned = request
        unsigned.headers = ["Host": "127.0.0.1:4566"]
        #expect(Self.code(Self.check(unsigned, with: Self.verifier(keys))) == "MissingAuthenticationToken")
    }

    @Test("time: 15 minutes of skew either way, and never past the keys' expiry",
          .enabled("python3 with botocore is not installed") { await ChildProcess.pythonHas("botocore") })
    func clockSkewAndKeyExpiry() async throws {
        let request = try await Self.botocoreSTSRequest(Oracle.keys)
        let verifier = Self.verifier(Oracle.keys)
        #expect(Self.code(Self.check(request, with: verifier, at: Self.signingTime + 899)) == nil)
        let stale = Self.check(request, with: verifier, at: Self.signingTime + 901)
        #expect(Self.code(stale) == "SignatureDoesNotMatch")
        if case let .failure(rejection) = stale { #expect(rejection.message.hasPrefix("Signature expired: 20251112T232640Z is now earlier than")) }
        #expect(Self.code(Self.check(request, with: verifier, at: Self.signingTime - 901)) == "SignatureDoesNotMatch")

        let temporary = try await Self.botocoreSTSRequest(Oracle.temporaryKeys)
        let expiry = Int(try #require(Oracle.temporaryKeys.expiration).timeIntervalSince1970)
        #expect(Self.code(Self.check(temporary, with: Self.verifier(Oracle.temporaryKeys), at: expiry)) == "ExpiredToken")
    }

    @Test("botocore's RDS, ElastiCache and MemoryDB tokens verify while fresh, and not after 900 s",
          .enabled("python3 with botocore is not installed") { await ChildProcess.pythonHas("botocore") })
    func presignedTokensFromBotocore() async throws {
        let input = try JSONSerialization.data(withJSONObject: Oracle.cases.map(\.oracleInput))
        let result = try await ChildProcess.python([Oracle.oracleScript], stdin: input)
        try #require(result.status == 0, "oracle failed: \(result.stderr)")
        let tokens = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String])
        let verifier = Self.verifier(Oracle.keys, Oracle.temporaryKeys)
        for (testCase, token) in zip(Oracle.cases, tokens) {
            let signedAt = Date(timeIntervalSince1970: TimeInterval(testCase.time))
            let fresh = verifier.verifyToken(token, now: signedAt.addingTimeInterval(60))
            if testCase.temporary, signedAt >= Oracle.temporaryKeys.expiration! {
                #expect(Self.code(fresh) == "ExpiredToken", "\(testCase.testDescription)")
                continue
            }
            let signature = try fresh.get()
            #expect(signature.expiresAt == signedAt.addingTimeInterval(900), "\(testCase.testDescription)")
            #expect(Self.code(verifier.verifyToken(token, now: signedAt.addingTimeInterval(901))) == "RequestExpired")
            let forged = token.replacingOccurrences(of: "Action=connect", with: "Action=connecT")
            #expect(Self.code(verifier.verifyToken(forged, now: signedAt)) == "SignatureDoesNotMatch")
        }
    }

    @Test("a presigned token with a repeated parameter, a future date or a loose X-Amz-Expires is refused")
    func presignedShapes() {
        let keys = Oracle.temporaryKeys
        let verifier = Self.verifier(keys)
        let signedAt = Date(timeIntervalSince1970: TimeInterval(Self.signingTime))
        let token = RDSAuthToken.make(host: "db.local", port: 5432, user: "kong", region: "us-east-1",
                                      credentials: keys, at: signedAt).token.reveal()
        #expect(Self.code(verifier.verifyToken(token, now: signedAt)) == nil)
        let signature = String(token.split(separator: "&").last!)
        #expect(Self.code(verifier.verifyToken(token + "&" + signature, now: signedAt)) == "IncompleteSignature")
        #expect(Self.code(verifier.verifyToken(token, now: signedAt.addingTimeInterval(-901))) == "RequestExpired")
        let loose = token.replacingOccurrences(of: "X-Amz-Expires=900", with: "X-Amz-Expires=+900")
        #expect(Self.code(verifier.verifyToken(loose, now: signedAt)) == "IncompleteSignature")
    }

    @Test("SignedHeaders must be what a signer writes: sorted, lower case, with host and x-amz-date, nothing unsignable",
          .enabled("python3 with botocore is not installed") { await ChildProcess.pythonHas("botocore") })
    func signedHeaderList() async throws {
        let request = try await Self.botocoreSTSRequest(Oracle.keys)
        let authorization = try #require(request.headers["authorization"])
        for (from, to) in [("content-type;host;x-amz-date", "content-type;host;user-agent;x-amz-date"),
                           ("content-type;host;x-amz-date", "host;content-type;x-amz-date"),
                           ("content-type;host;x-amz-date", "content-type;host")] {
            var changed = request
            changed.headers.replace("Authorization", authorization.replacingOccurrences(of: from, with: to))
            changed.headers.add("User-Agent", "test")
            #expect(Self.code(Self.check(changed, with: Self.verifier(Oracle.keys))) == "SignatureDoesNotMatch", "\(to)")
        }
    }

    @Test("time stamps parse exactly, and only in the SigV4 form")
    func timeStamps() {
        #expect(SigV4Verifier.date("20150830T123600Z") == Date(timeIntervalSince1970: 1_440_938_160))
        #expect(SigV4Verifier.date("20000229T000000Z") == Date(timeIntervalSince1970: 951_782_400))
        for bad in ["20150830T123600", "2015-08-30T12:36:00Z", "20150230T000000Z", "20151330T000000Z", "2015083aT123600Z"] {
            #expect(SigV4Verifier.date(bad) == nil, "\(bad)")
        }
    }
}
