import Foundation
import Testing
@testable import CloudAuth

/// SigV4 behaviour the suites do not pin down: the signed host's port, where a session token goes,
/// which headers are left unsigned, and the presigned URL's shape.
struct SigV4SignerTests {
    static let time = Date(timeIntervalSince1970: 1_440_938_160)
    static let keys = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                                     sessionToken: Secret("session/token+=="), source: "test")

    static func signer(_ options: SigV4Signer.Options = SigV4Signer.Options()) -> SigV4Signer {
        SigV4Signer(credentials: keys, region: "us-east-1", service: "service", options: options)
    }

    @Test("the signed host leaves out the scheme's default port only", arguments: [
        ("https://example.amazonaws.com:443/", "host:example.amazonaws.com\n"),
        ("http://example.amazonaws.com:80/", "host:example.amazonaws.com\n"),
        ("https://example.amazonaws.com:80/", "host:example.amazonaws.com:80\n"),
        ("http://127.0.0.1:5000/", "host:127.0.0.1:5000\n"),
        ("https://Example.AmazonAWS.com/", "host:example.amazonaws.com\n"),
    ])
    func hostPort(_ url: String, _ expected: String) throws {
        let request = SigV4Request(method: "GET", url: try EndpointURL(parsing: url))
        let trace = Self.signer().presignWithTrace(request, expires: 60, at: Self.time).trace
        #expect(trace.canonicalRequest.contains("\n" + expected))
    }

    @Test("header signing: the session token is signed, or added unsigned after signing")
    func sessionTokenInHeaders() throws {
        let request = SigV4Request(method: "POST", url: try EndpointURL(parsing: "https://sts.amazonaws.com/"),
                                   headers: ["User-Agent": "credagent", "Content-Type": "text/plain"], body: Array("x".utf8))
        let signed = Self.signer().sign(request, at: Self.time)
        #expect(signed.headers["X-Amz-Security-Token"] == "session/token+==")
        #expect(signed.headers["Authorization"]?.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,") == true)

        let after = Self.signer(SigV4Signer.Options(sessionToken: .afterSigning)).sign(request, at: Self.time)
        #expect(after.headers["X-Amz-Security-Token"] == "session/token+==")
        #expect(after.headers["Authorization"]?.contains("SignedHeaders=content-type;host;x-amz-date,") == true)
        #expect(after.headers["X-Amz-Date"] == "20150830T123600Z")
    }

    @Test("x-amz-content-sha256 is added and signed on request")
    func contentSHA256() throws {
        let request = SigV4Request(method: "PUT", url: try EndpointURL(parsing: "https://s3.amazonaws.com/bucket/key"),
                                   body: Array("hello".utf8))
        let signed = Self.signer(SigV4Signer.Options(normalizePath: false, signContentSHA256: true)).sign(request, at: Self.time)
        #expect(signed.headers["x-amz-content-sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        #expect(signed.headers["Authorization"]?.contains("x-amz-content-sha256;x-amz-date") == true)
    }

    @Test("presigned URL: own parameters first in their order, X-Amz-* after, signature last")
    func presignedShape() throws {
        let request = SigV4Request(method: "GET", url: try EndpointURL(parsing: "https://example.amazonaws.com/a b/?Zeta=1&Alpha=x y"))
        let url = Self.signer().presign(request, expires: 900, at: Self.time).url.reveal()
        #expect(url.hasPrefix("https://example.amazonaws.com/a%20b/?Zeta=1&Alpha=x%20y&X-Amz-Algorithm=AWS4-HMAC-SHA256&"
                              + "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&"
                              + "X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=session%2Ftoken%2B%3D%3D&X-Amz-Signature="))
        let signature = try #require(url.split(separator: "=").last)
        #expect(signature.count == 64 && signature.allSatisfy(\.isHexDigit))

        let after = Self.signer(SigV4Signer.Options(sessionToken: .afterSigning))
            .presignWithTrace(request, expires: 900, at: Self.time)
        #expect(!after.trace.canonicalRequest.contains("X-Amz-Security-Token"))
        #expect(after.url.query.reveal().contains("&X-Amz-Security-Token=session%2Ftoken%2B%3D%3D&X-Amz-Signature="))
    }

    @Test("a signature changes with every input it covers")
    func signatureCoversInputs() throws {
        let url = try EndpointURL(parsing: "https://example.amazonaws.com/?a=1")
        func signature(_ request: SigV4Request, _ signer: SigV4Signer = SigV4SignerTests.signer(), at date: Date = SigV4SignerTests.time) -> String {
            signer.presignWithTrace(request, expires: 60, at: date).trace.signature
        }
        let base = signature(SigV4Request(method: "GET", url: url))
        var otherQuery = url
        otherQuery.query = "a=2"
        let variants = [
            signature(SigV4Request(method: "POST", url: url)),
            signature(SigV4Request(method: "GET", url: otherQuery)),
            signature(SigV4Request(method: "GET", url: url, headers: ["X-Extra": "1"])),
            signature(SigV4Request(method: "GET", url: url, body: [1])),
            signature(SigV4Request(method: "GET", url: url), at: Self.time.addingTimeInterval(1)),
            signature(SigV4Request(method: "GET", url: url), SigV4Signer(credentials: Self.keys, region: "us-east-2", service: "service")),
            signature(SigV4Request(method: "GET", url: url), SigV4Signer(credentials: Self.keys, region: "us-east-1", service: "other")),
        ]
        #expect(Set(variants + [base]).count == variants.count + 1)
    }
}
