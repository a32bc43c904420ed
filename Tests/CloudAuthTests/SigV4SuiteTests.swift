import Foundation
import Testing
@testable import CloudAuth

/// The official AWS SigV4 test suite, both copies: botocore's (`.req` -> `.creq`, `.sts`,
/// `.authz`) and aws-c-auth's (`request.txt` + `context.json` -> header-* and query-* files).
///
/// The vectors live outside the project (`../shared/vectors` from the package root); without them
/// the tests are skipped with the reason.
struct SigV4SuiteTests {
    static let suiteDirectory: String = {
        // #filePath is .../Tests/CloudAuthTests/SigV4SuiteTests.swift; the package root is two up.
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return packageRoot.appendingPathComponent("../shared/vectors/aws-sigv4-testsuite").standardizedFileURL.path
    }()
    static var vectorsPresent: Bool { FileManager.default.fileExists(atPath: suiteDirectory) }

    static let accessKey = "AKIDEXAMPLE"
    static let secretKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    /// 2015-08-30T12:36:00Z
    static let signingTime = Date(timeIntervalSince1970: 1_440_938_160)

    /// Top-level botocore cases, including the nested normalize-path/ and post-sts-token/ ones.
    static let botocoreCases: [String] = {
        guard vectorsPresent, let walker = FileManager.default.enumerator(atPath: suiteDirectory) else { return [] }
        var cases: [String] = []
        while let entry = walker.nextObject() as? String {
            if entry.hasPrefix("aws-c-auth-v4") { continue }
            if entry.hasSuffix(".req") { cases.append(String(entry.dropLast(4))) }
        }
        return cases.sorted()
    }()

    static let awsCAuthCases: [String] = {
        guard vectorsPresent else { return [] }
        let root = suiteDirectory + "/aws-c-auth-v4"
        return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
    }()

    /// Skipped with the reason where the vectors are absent, except in CI, which always has them
    /// beside the clone: there a missing suite fails instead of passing silently.
    @Test("the vectors are present",
          .enabled(if: vectorsPresent || ProcessInfo.processInfo.environment["CI"] != nil,
                   "SigV4 vectors not found beside the project (../shared/vectors): the suite tests are skipped"))
    func vectorsAvailable() throws {
        try #require(Self.vectorsPresent, "SigV4 vectors not found at \(Self.suiteDirectory); the suite tests are skipped")
        #expect(Self.botocoreCases.count == 34)
        #expect(Self.awsCAuthCases.count == 38)
    }

    @Test("botocore copy: canonical request, string to sign, Authorization", .enabled(if: vectorsPresent),
          arguments: botocoreCases)
    func botocoreCase(_ name: String) throws {
        let base = Self.suiteDirectory + "/" + name
        let request = try Self.parseRequest(Self.read(base + ".req"))
        var token: Secret?
        if name.hasSuffix("get-vanilla-with-session-token") {
            let context = try Self.json(Self.suiteDirectory + "/SUITE_CONTEXT.json")
            let credentials = context["credentials"] as? [String: Any]
            token = (credentials?["session_token_get_vanilla_with_session_token"] as? String).map(Secret.init)
        }
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyID: Self.accessKey, secretAccessKey: Secret(Self.secretKey),
                                                             sessionToken: token, source: "test"),
                                 region: "us-east-1", service: "service")
        let (signed, trace) = signer.signWithTrace(request, at: Self.signingTime)
        #expect(trace.canonicalRequest == (try Self.read(base + ".creq")))
        #expect(trace.stringToSign == (try Self.read(base + ".sts")))
        #expect(signed.headers["Authorization"] == (try Self.read(base + ".authz")))
    }

    @Test("aws-c-auth copy: header signing and query presigning", .enabled(if: vectorsPresent),
          arguments: awsCAuthCases)
    func awsCAuthCase(_ name: String) throws {
        let base = Self.suiteDirectory + "/aws-c-auth-v4/" + name + "/"
        let context = try Self.json(base + "context.json")
        let credentials = try #require(context["credentials"] as? [String: Any])
        let keys = AWSCredentials(accessKeyID: try #require(credentials["access_key_id"] as? String),
                                  secretAccessKey: Secret(try #require(credentials["secret_access_key"] as? String)),
                                  sessionToken: (credentials["token"] as? String).map(Secret.init), source: "test")
        #expect(context["timestamp"] as? String == "2015-08-30T12:36:00Z")
        let options = SigV4Signer.Options(normalizePath: context["normalize"] as? Bool ?? true,
                                          signContentSHA256: context["sign_body"] as? Bool ?? false,
                                          sessionToken: context["omit_session_token"] as? Bool == true ? .afterSigning : .signed)
        let signer = SigV4Signer(credentials: keys, region: try #require(context["region"] as? String),
                                 service: try #require(context["service"] as? String), options: options)
        let request = try Self.parseRequest(Self.read(base + "request.txt"))

        let header = signer.signWithTrace(request, at: Self.signingTime)
        #expect(header.trace.canonicalRequest == (try Self.read(base + "header-canonical-request.txt")))
        #expect(header.trace.stringToSign == (try Self.read(base + "header-string-to-sign.txt")))
        #expect(header.trace.signature == (try Self.read(base + "header-signature.txt")))

        let expires = try #require(context["expiration_in_seconds"] as? Int)
        let query = signer.presignWithTrace(request, expires: expires, at: Self.signingTime)
        #expect(query.trace.canonicalRequest == (try Self.read(base + "query-canonical-request.txt")))
        #expect(query.trace.stringToSign == (try Self.read(base + "query-string-to-sign.txt")))
        #expect(query.trace.signature == (try Self.read(base + "query-signature.txt")))
        // The presigned URL carries the same parameters as aws-c-auth's signed request line
        // (which leaves non-ASCII names unencoded: compare decoded).
        let signedLine = try Self.read(base + "query-signed-request.txt").split(separator: "\n")[0]
        let expectedQuery = String(signedLine.split(separator: "?", maxSplits: 1)[1].split(separator: " ")[0])
        func decoded(_ query: String) -> Set<String> {
            Set(SigV4Canonical.decodeQuery(query).map { "\($0.name)=\($0.value)" })
        }
        #expect(decoded(query.url.query.reveal()) == decoded(expectedQuery))
    }

    // MARK: Vector files

    static func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    static func json(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Parses the suite's raw HTTP request: `METHOD PATH HTTP/1.1` (the path may hold spaces),
    /// header lines (a line starting with white space continues the previous value), a blank
    /// line, the body.
    static func parseRequest(_ text: String) throws -> SigV4Request {
        var lines = text.components(separatedBy: "\n")
        let requestLine = lines.removeFirst()
        let method = String(requestLine.prefix { $0 != " " })
        let versionStart = try #require(requestLine.range(of: " HTTP/", options: .backwards))
        let target = String(requestLine[requestLine.index(after: requestLine.firstIndex(of: " ")!)..<versionStart.lowerBound])
        var headers = HTTPHeaders()
        var fields: [(String, String)] = []
        var bodyLines: [String]?
        for line in lines {
            if bodyLines != nil { bodyLines!.append(line); continue }
            if line.isEmpty { bodyLines = []; continue }
            if line.first == " " || line.first == "\t" {
                fields[fields.count - 1].1 += "\n" + line
                continue
            }
            let colon = try #require(line.firstIndex(of: ":"))
            fields.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        for (name, value) in fields { headers.add(name, value) }
        let pathAndQuery = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let host = headers["Host"] ?? "example.amazonaws.com"
        let url = EndpointURL(scheme: "https", host: host, port: nil, path: String(pathAndQuery[0]),
                              query: pathAndQuery.count > 1 ? String(pathAndQuery[1]) : nil)
        let body = (bodyLines ?? []).joined(separator: "\n")
        return SigV4Request(method: method, url: url, headers: headers, body: Array(body.utf8))
    }
}
