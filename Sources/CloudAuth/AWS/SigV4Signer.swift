import Foundation
import Synchronization

/// A request to sign: method, URL, headers and body.
///
/// `url.path` is the path unencoded (`/example space/`); the signer encodes it. `url.query` is
/// the raw query string; the signer decodes and re-encodes it.
public struct SigV4Request: Sendable {
    public var method: String
    public var url: EndpointURL
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(method: String, url: EndpointURL, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// AWS Signature Version 4: signs a request in its headers (`Authorization`) or presigns it as
/// a URL (`X-Amz-*` query parameters).
///
/// Pure: the signing time is passed in and nothing is read from the environment. The credentials
/// are the only secret input; results hold a signature and, when the keys are temporary, the
/// session token, so they are secrets too.
public struct SigV4Signer: Sendable {
    /// Where a session token goes.
    public enum SessionTokenPlacement: Sendable {
        /// Part of what is signed: the `X-Amz-Security-Token` header, or the query parameter
        /// inside the canonical query. What STS, RDS, ElastiCache and most services expect.
        case signed
        /// Added after signing, outside the signature (a few services ask for this).
        case afterSigning
    }

    /// Variations of the algorithm that some services need.
    public struct Options: Sendable {
        /// Remove dot segments and collapse repeated slashes in the path (every service but S3).
        public var normalizePath: Bool
        /// Add a signed `x-amz-content-sha256` header holding the body's hash (header signing).
        public var signContentSHA256: Bool
        public var sessionToken: SessionTokenPlacement

        public init(normalizePath: Bool = true, signContentSHA256: Bool = false,
                    sessionToken: SessionTokenPlacement = .signed) {
            self.normalizePath = normalizePath
            self.signContentSHA256 = signContentSHA256
            self.sessionToken = sessionToken
        }
    }

    /// What the signature covered, for tests and debugging. Holds the session token: never log it.
    struct Trace: Sendable {
        var canonicalRequest: String
        var stringToSign: String
        var signature: String
    }

    public let credentials: AWSCredentials
    public let region: String
    public let service: String
    public let options: Options

    public init(credentials: AWSCredentials, region: String, service: String, options: Options = Options()) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.options = options
    }

    static let algorithm = "AWS4-HMAC-SHA256"
    private static let signaturePrefix = Array("&X-Amz-Signature=".utf8)
    private static let emptyBodyHash = Array("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".utf8)
    private static let hostName = Array("host".utf8)
    /// Headers that proxies and clients change in flight; signing them would break the signature.
    static let unsignedHeaders: Set<String> = ["authorization", "user-agent", "x-amzn-trace-id",
                                                        "expect", "transfer-encoding", "connection"]

    // MARK: Header signing

    /// Signs `request` in its headers: sets `X-Amz-Date`, the session token and
    /// `x-amz-content-sha256` as the options say, and `Authorization`.
    public func sign(_ request: SigV4Request, at date: Date) -> SigV4Request {
        signWithTrace(request, at: date).request
    }

    func signWithTrace(_ request: SigV4Request, at date: Date) -> (request: SigV4Request, trace: Trace) {
        let time = AmzDate(date)
        let scope = SigV4Scope.cached(credentials: credentials, time: time, region: region, service: service)
        var signed = request
        signed.headers.replace("X-Amz-Date", time.stamp)
        let bodyHash = hashedBody(request.body)
        if options.signContentSHA256 { signed.headers.replace("x-amz-content-sha256", String(decoding: bodyHash, as: UTF8.self)) }
        if let token = credentials.sessionToken, options.sessionToken == .signed {
            signed.headers.replace("X-Amz-Security-Token", token.reveal())
        }
        let headers = canonicalHeaders(of: signed)
        let query = SigV4Canonical.QueryParameters(SigV4Canonical.decodeQuery(request.url.query ?? ""))
        let work = compute(method: request.method, path: request.url.path, query: query,
                           headers: headers, bodyHash: bodyHash, time: time, scope: scope)
        let signedNames = String(decoding: headers.signedNames, as: UTF8.self)
        signed.headers.replace("Authorization",
                               "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope.scopeText), "
                               + "SignedHeaders=\(signedNames), Signature=\(work.trace.signature)")
        if let token = credentials.sessionToken, options.sessionToken == .afterSigning {
            signed.headers.replace("X-Amz-Security-Token", token.reveal())
        }
        return (signed, work.trace)
    }

    // MARK: Query presigning

    /// A presigned request: the URL to send and its query alone.
    public struct PresignedURL: Sendable {
        /// scheme://host[:port]/path?query — a secret, it authorises the request.
        public var url: Secret
        /// The query string after `?`: the request's own parameters in their order, then the
        /// `X-Amz-*` parameters, `X-Amz-Signature` last (botocore's order).
        public var query: Secret
    }

    /// Presigns `request` valid for `expires` seconds from `date`. Every header of the request is
    /// signed (plus `host`); the body's hash is part of the signature.
    public func presign(_ request: SigV4Request, expires: Int, at date: Date) -> PresignedURL {
        presignWithTrace(request, expires: expires, at: date).url
    }

    func presignWithTrace(_ request: SigV4Request, expires: Int, at date: Date) -> (url: PresignedURL, trace: Trace) {
        var query: [UInt8] = []
        let work = appendPresignedQuery(method: request.method, path: request.url.path,
                                        parameters: SigV4Canonical.QueryParameters(SigV4Canonical.decodeQuery(request.url.query ?? "")),
                                        headers: canonicalHeaders(of: request), bodyHash: hashedBody(request.body),
                                        expires: expires, time: AmzDate(date), to: &query)
        var url: [UInt8] = Array("\(request.url.scheme)://\(request.url.hostHeader)".utf8)
        PercentEncoding.append(request.url.path, to: &url, keepingSlash: true)
        url.append(UInt8(ascii: "?"))
        url.append(contentsOf: query)
        let presigned = PresignedURL(url: Secret(String(decoding: url, as: UTF8.self)),
                                     query: Secret(String(decoding: query, as: UTF8.self)))
        return (presigned, work.trace)
    }

    /// The token makers' path: presigns `GET https://host[:port]/` with `parameters` (already
    /// encoded) and appends the query to `out`. The signed `host` header is `host` in lower case,
    /// without port 443, as botocore signs it.
    func appendPresignedQuery(host: String, port: Int?, parameters: consuming SigV4Canonical.QueryParameters,
                              expires: Int, at date: Date, to out: inout [UInt8]) {
        _ = appendPresignedQuery(method: "GET", path: "/", parameters: consume parameters, headers: .host(host, port: port),
                                 bodyHash: Self.emptyBodyHash, expires: expires, time: AmzDate(date), to: &out)
    }

    /// Appends the presigned query to `out`: `parameters` in their order, the `X-Amz-*`
    /// parameters, `X-Amz-Signature` last.
    private func appendPresignedQuery(method: String, path: String, parameters: consuming SigV4Canonical.QueryParameters,
                                      headers: CanonicalHeaders, bodyHash: [UInt8], expires: Int, time: AmzDate,
                                      to out: inout [UInt8]) -> SignatureWork {
        let scope = SigV4Scope.cached(credentials: credentials, time: time, region: region, service: service)
        var all = consume parameters
        all.reserveCapacity(extra: 160 + scope.encodedCredential.count + (scope.encodedSessionToken?.count ?? 0))
        all.append(encodedName: "X-Amz-Algorithm") { $0.append(contentsOf: Self.algorithm.utf8) }
        all.append(encodedName: "X-Amz-Credential") { $0.append(contentsOf: scope.encodedCredential) }
        all.append(encodedName: "X-Amz-Date") { time.appendStamp(to: &$0) }
        all.append(encodedName: "X-Amz-Expires") { SigV4Canonical.appendDecimal(expires, to: &$0) }
        all.append(encodedName: "X-Amz-SignedHeaders") { names in
            headers.signedNames.withUnsafeBufferPointer { PercentEncoding.append($0, to: &names) }
        }
        func appendToken() {
            if let token = scope.encodedSessionToken {
                all.append(encodedName: "X-Amz-Security-Token") { $0.append(contentsOf: token) }
            }
        }
        if options.sessionToken == .signed { appendToken() }
        let work = compute(method: method, path: path, query: all, headers: headers, bodyHash: bodyHash,
                           time: time, scope: scope)
        if options.sessionToken == .afterSigning { appendToken() }

        out.reserveCapacity(out.count + all.byteCount + Self.signaturePrefix.count + 64)
        all.appendQuery(to: &out)
        out.append(contentsOf: Self.signaturePrefix)
        work.appendSignature(to: &out)
        return work
    }

    // MARK: Shared steps

    private enum CanonicalHeaders {
        /// `host` alone, from the host name and port: the token makers' case, written straight
        /// into the canonical request.
        case host(String, port: Int?)
        /// `name:value\n` for each signed header (names lower case and sorted, values folded),
        /// and the names joined by `;`.
        case fields(block: [UInt8], signedNames: [UInt8])

        var signedNames: [UInt8] {
            switch self {
            case .host: SigV4Signer.hostName
            case let .fields(_, signedNames): signedNames
            }
        }

        /// Appends the `name:value\n` lines. A bare host is lower-cased and loses port 443.
        func appendBlock(to out: inout [UInt8]) {
            switch self {
            case let .host(host, port):
                out.append(contentsOf: SigV4Signer.hostName)
                out.append(UInt8(ascii: ":"))
                SigV4Canonical.appendLowercased(host, to: &out)
                if let port, port != 443 {
                    out.append(UInt8(ascii: ":"))
                    SigV4Canonical.appendDecimal(port, to: &out)
                }
                out.append(UInt8(ascii: "\n"))
            case let .fields(block, _):
                out.append(contentsOf: block)
            }
        }
    }

    /// The signed headers of `request`: all but the unsigned set, plus `host` from the URL when
    /// the request has none (without the scheme's default port, as the SDKs sign it).
    private func canonicalHeaders(of request: SigV4Request) -> CanonicalHeaders {
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(request.headers.fields.count + 1)
        var hasHost = false
        for field in request.headers.fields {
            let lower = field.name.lowercased()
            if Self.unsignedHeaders.contains(lower) { continue }
            if lower == "host" { hasHost = true }
            fields.append(field)
        }
        if !hasHost { fields.append(("host", request.url.hostHeader)) }
        var block: [UInt8] = [], signedNames: [UInt8] = []
        for field in SigV4Canonical.headers(fields) {
            block.append(contentsOf: field.name.utf8)
            block.append(UInt8(ascii: ":"))
            block.append(contentsOf: field.value.utf8)
            block.append(UInt8(ascii: "\n"))
            if !signedNames.isEmpty { signedNames.append(UInt8(ascii: ";")) }
            signedNames.append(contentsOf: field.name.utf8)
        }
        return .fields(block: block, signedNames: signedNames)
    }

    /// The body's SHA-256 in lower-case hex.
    private func hashedBody(_ body: [UInt8]) -> [UInt8] {
        if body.isEmpty { return Self.emptyBodyHash }
        var hex: [UInt8] = []
        withUnsafeTemporaryAllocation(byteCount: Digest.sha256Length, alignment: 1) { digest in
            body.withUnsafeBytes { Digest.sha256($0, into: digest) }
            SigV4Canonical.appendHex(UnsafeRawBufferPointer(digest), to: &hex)
        }
        return hex
    }

    /// One signature's canonical request, string to sign and signature (lower-case hex), back to
    /// back in one buffer.
    private struct SignatureWork {
        var bytes: [UInt8]
        var canonicalRequest: Range<Int>
        var stringToSign: Range<Int>
        var signature: Range<Int>

        func appendSignature(to out: inout [UInt8]) {
            bytes.withUnsafeBufferPointer { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0[signature])) }
        }

        var trace: Trace {
            func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
            return Trace(canonicalRequest: text(canonicalRequest), stringToSign: text(stringToSign), signature: text(signature))
        }
    }

    private func compute(method: String, path: String, query: borrowing SigV4Canonical.QueryParameters,
                         headers: CanonicalHeaders, bodyHash: [UInt8], time: AmzDate, scope: SigV4Scope) -> SignatureWork {
        var work: [UInt8] = []
        work.reserveCapacity(2 * query.byteCount + 3 * path.utf8.count + 512)
        if method.utf8.contains(where: { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }) {
            work.append(contentsOf: method.uppercased().utf8)
        } else {
            work.append(contentsOf: method.utf8)
        }
        work.append(UInt8(ascii: "\n"))
        SigV4Canonical.appendURI(path, normalize: options.normalizePath, to: &work)
        work.append(UInt8(ascii: "\n"))
        query.appendCanonical(to: &work)
        work.append(UInt8(ascii: "\n"))
        headers.appendBlock(to: &work)
        work.append(UInt8(ascii: "\n"))
        work.append(contentsOf: headers.signedNames)
        work.append(UInt8(ascii: "\n"))
        work.append(contentsOf: bodyHash)
        let canonicalRequest = 0..<work.count

        work.append(contentsOf: Self.algorithm.utf8)
        work.append(UInt8(ascii: "\n"))
        time.appendStamp(to: &work)
        work.append(UInt8(ascii: "\n"))
        work.append(contentsOf: scope.scope)
        work.append(UInt8(ascii: "\n"))
        withUnsafeTemporaryAllocation(byteCount: Digest.sha256Length, alignment: 1) { digest in
            work.withUnsafeBytes { Digest.sha256(UnsafeRawBufferPointer(rebasing: $0[canonicalRequest]), into: digest) }
            SigV4Canonical.appendHex(UnsafeRawBufferPointer(digest), to: &work)
        }
        let stringToSign = canonicalRequest.upperBound..<work.count

        withUnsafeTemporaryAllocation(byteCount: Digest.sha256Length, alignment: 1) { tag in
            work.withUnsafeBytes { scope.signingKey.authenticate(UnsafeRawBufferPointer(rebasing: $0[stringToSign]), into: tag) }
            SigV4Canonical.appendHex(UnsafeRawBufferPointer(tag), to: &work)
        }
        return SignatureWork(bytes: work, canonicalRequest: canonicalRequest, stringToSign: stringToSign,
                             signature: stringToSign.upperBound..<work.count)
    }
}

/// What every signature by one key pair for one day, region and service shares: the credential
/// scope, the presigned `X-Amz-Credential` and `X-Amz-Security-Token` values and the signing key.
/// Derived once and cached, as the AWS SDKs for Go and Java cache the signing key: it costs four HMACs,
/// more than the rest of a token.
final class SigV4Scope: Sendable {
    private let accessKeyID: String
    private let secretAccessKey: Secret
    private let sessionToken: Secret?
    private let daysSince1970: Int64
    private let region: String
    private let service: String

    /// `yyyyMMdd/region/service/aws4_request`
    let scope: [UInt8]
    /// `accessKeyID/scope`, percent-encoded.
    let encodedCredential: [UInt8]
    /// The session token percent-encoded, when the keys are temporary.
    let encodedSessionToken: [UInt8]?
    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    let signingKey: Digest.HMACKey

    var scopeText: String { String(decoding: scope, as: UTF8.self) }

    private init(credentials: AWSCredentials, time: AmzDate, region: String, service: String) {
        accessKeyID = credentials.accessKeyID
        secretAccessKey = credentials.secretAccessKey
        sessionToken = credentials.sessionToken
        daysSince1970 = time.daysSince1970
        self.region = region
        self.service = service

        var day: [UInt8] = []
        time.appendDay(to: &day)
        scope = day + Array("/\(region)/\(service)/aws4_request".utf8)
        var credential: [UInt8] = []
        PercentEncoding.append(accessKeyID, to: &credential)
        credential.append(contentsOf: "%2F".utf8)
        scope.withUnsafeBufferPointer { PercentEncoding.append($0, to: &credential) }
        encodedCredential = credential
        encodedSessionToken = sessionToken.map { token in
            var encoded: [UInt8] = []
            PercentEncoding.append(token.reveal(), to: &encoded)
            return encoded
        }
        let secret = Array(("AWS4" + secretAccessKey.reveal()).utf8)
        let dateKey = Digest.hmacSHA256(key: secret, message: day)
        let regionKey = Digest.hmacSHA256(key: dateKey, message: region)
        let serviceKey = Digest.hmacSHA256(key: regionKey, message: service)
        signingKey = Digest.HMACKey(Digest.hmacSHA256(key: serviceKey, message: "aws4_request"))
    }

    private func matches(_ credentials: AWSCredentials, _ time: AmzDate, _ region: String, _ service: String) -> Bool {
        daysSince1970 == time.daysSince1970 && accessKeyID == credentials.accessKeyID && region == self.region
            && service == self.service && secretAccessKey == credentials.secretAccessKey
            && sessionToken == credentials.sessionToken
    }

    /// Keys rotate daily and a process signs for few: a short list, newest first, searched in order.
    private static let recent = Mutex<[SigV4Scope]>([])
    private static let capacity = 32

    /// The scope for these keys, day, region and service, from the cache or derived now.
    static func cached(credentials: AWSCredentials, time: AmzDate, region: String, service: String) -> SigV4Scope {
        if let found = recent.withLock({ $0.first { $0.matches(credentials, time, region, service) } }) { return found }
        let scope = SigV4Scope(credentials: credentials, time: time, region: region, service: service)
        recent.withLock { recent in
            if recent.count >= capacity { recent.removeLast() }
            recent.insert(scope, at: 0)
        }
        return scope
    }
}
