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
    private static let signaturePrefix = Array("X-Amz-Signature=".utf8)
    private static let emptyBodyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// Headers that proxies and clients change in flight; signing them would break the signature.
    private static let unsignedHeaders: Set<String> = ["authorization", "user-agent", "x-amzn-trace-id",
                                                        "expect", "transfer-encoding", "connection"]

    // MARK: Header signing

    /// Signs `request` in its headers: sets `X-Amz-Date`, the session token and
    /// `x-amz-content-sha256` as the options say, and `Authorization`.
    public func sign(_ request: SigV4Request, at date: Date) -> SigV4Request {
        signWithTrace(request, at: date).request
    }

    func signWithTrace(_ request: SigV4Request, at date: Date) -> (request: SigV4Request, trace: Trace) {
        let time = AmzDate(secondsSince1970: Int64(date.timeIntervalSince1970.rounded(.down)))
        var signed = request
        signed.headers.replace("X-Amz-Date", time.stamp)
        let bodyHash = hashedBody(request.body)
        if options.signContentSHA256 { signed.headers.replace("x-amz-content-sha256", bodyHash) }
        if let token = credentials.sessionToken, options.sessionToken == .signed {
            signed.headers.replace("X-Amz-Security-Token", token.reveal())
        }
        let headers = canonicalHeaders(of: signed)
        let query = SigV4Canonical.QueryParameters(SigV4Canonical.decodeQuery(request.url.query ?? ""))
        let trace = compute(method: request.method, path: request.url.path, query: query,
                            headers: headers, bodyHash: bodyHash, time: time, scope: scope(time))
        signed.headers.replace("Authorization",
                               "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope(time)), "
                               + "SignedHeaders=\(headers.signedNames), Signature=\(String(decoding: trace.signature, as: UTF8.self))")
        if let token = credentials.sessionToken, options.sessionToken == .afterSigning {
            signed.headers.replace("X-Amz-Security-Token", token.reveal())
        }
        return (signed, trace.strings)
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
        let parameters = SigV4Canonical.QueryParameters(SigV4Canonical.decodeQuery(request.url.query ?? ""))
        let (query, trace) = presignedQuery(request, parameters: parameters, expires: expires, at: date)
        var url: [UInt8] = Array("\(request.url.scheme)://\(request.url.hostHeader)".utf8)
        SigV4Canonical.appendEncoded(request.url.path, to: &url, keepSlash: true)
        url.append(UInt8(ascii: "?"))
        url.append(contentsOf: query)
        let queryText = String(decoding: query, as: UTF8.self)
        return (PresignedURL(url: Secret(String(decoding: url, as: UTF8.self)), query: Secret(queryText)), trace.strings)
    }

    /// The presigned query for `request` (whose own query is ignored) with `parameters` as its
    /// own parameters, already encoded: the token makers' fast path.
    func presignedQuery(_ request: SigV4Request, parameters: SigV4Canonical.QueryParameters, expires: Int,
                        at date: Date) -> (query: [UInt8], trace: ByteTrace) {
        let time = AmzDate(secondsSince1970: Int64(date.timeIntervalSince1970.rounded(.down)))
        let headers = canonicalHeaders(of: request)
        let scope = scope(time)
        var all = parameters
        all.append(encodedName: "X-Amz-Algorithm") { $0.append(contentsOf: Self.algorithm.utf8) }
        all.append(encodedName: "X-Amz-Credential") {
            SigV4Canonical.appendEncoded(credentials.accessKeyID, to: &$0)
            $0.append(contentsOf: "%2F".utf8)
            SigV4Canonical.appendEncoded(scope, to: &$0)
        }
        all.append(encodedName: "X-Amz-Date") { $0.append(contentsOf: time.stamp.utf8) }
        all.append(encodedName: "X-Amz-Expires") { $0.append(contentsOf: String(expires).utf8) }
        all.append(encodedName: "X-Amz-SignedHeaders") { SigV4Canonical.appendEncoded(headers.signedNames, to: &$0) }
        let token = credentials.sessionToken?.reveal()
        func appendToken() {
            if let token { all.append(encodedName: "X-Amz-Security-Token") { SigV4Canonical.appendEncoded(token, to: &$0) } }
        }
        if options.sessionToken == .signed { appendToken() }
        let trace = compute(method: request.method, path: request.url.path, query: all,
                            headers: headers, bodyHash: hashedBody(request.body), time: time, scope: scope)
        if options.sessionToken == .afterSigning { appendToken() }

        var query: [UInt8] = []
        query.reserveCapacity(512)
        all.appendQuery(to: &query)
        query.append(UInt8(ascii: "&"))
        query.append(contentsOf: Self.signaturePrefix)
        query.append(contentsOf: trace.signature)
        return (query, trace)
    }

    // MARK: Shared steps

    private struct CanonicalHeaders {
        /// Lower-case names, sorted, values folded.
        var fields: [(name: String, value: String)]
        var signedNames: String
    }

    /// The signed headers of `request`: all but the unsigned set, plus `host` from the URL when
    /// the request has none (without the scheme's default port, as the SDKs sign it).
    private func canonicalHeaders(of request: SigV4Request) -> CanonicalHeaders {
        if request.headers.fields.isEmpty {
            // The token makers' case: host alone.
            return CanonicalHeaders(fields: [("host", request.url.hostHeader)], signedNames: "host")
        }
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
        let canonical = SigV4Canonical.headers(fields)
        return CanonicalHeaders(fields: canonical, signedNames: canonical.map(\.name).joined(separator: ";"))
    }

    private func hashedBody(_ body: [UInt8]) -> String {
        body.isEmpty ? Self.emptyBodyHash : Encoding.hex(Digest.sha256(body))
    }

    private func scope(_ time: AmzDate) -> String {
        "\(time.day)/\(region)/\(service)/aws4_request"
    }

    /// The steps' results as bytes; `strings` converts them for tests.
    struct ByteTrace {
        var canonicalRequest: [UInt8]
        var stringToSign: [UInt8]
        /// Lower-case hex.
        var signature: [UInt8]

        var strings: Trace {
            Trace(canonicalRequest: String(decoding: canonicalRequest, as: UTF8.self),
                  stringToSign: String(decoding: stringToSign, as: UTF8.self),
                  signature: String(decoding: signature, as: UTF8.self))
        }
    }

    private func compute(method: String, path: String, query: SigV4Canonical.QueryParameters, headers: CanonicalHeaders,
                         bodyHash: String, time: AmzDate, scope: String) -> ByteTrace {
        var canonical: [UInt8] = []
        canonical.reserveCapacity(1024)
        if method.utf8.contains(where: { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }) {
            canonical.append(contentsOf: method.uppercased().utf8)
        } else {
            canonical.append(contentsOf: method.utf8)
        }
        canonical.append(UInt8(ascii: "\n"))
        SigV4Canonical.appendURI(path, normalize: options.normalizePath, to: &canonical)
        canonical.append(UInt8(ascii: "\n"))
        query.appendCanonical(to: &canonical)
        canonical.append(UInt8(ascii: "\n"))
        for field in headers.fields {
            canonical.append(contentsOf: field.name.utf8)
            canonical.append(UInt8(ascii: ":"))
            canonical.append(contentsOf: field.value.utf8)
            canonical.append(UInt8(ascii: "\n"))
        }
        canonical.append(UInt8(ascii: "\n"))
        canonical.append(contentsOf: headers.signedNames.utf8)
        canonical.append(UInt8(ascii: "\n"))
        canonical.append(contentsOf: bodyHash.utf8)

        var stringToSign: [UInt8] = []
        stringToSign.reserveCapacity(160)
        stringToSign.append(contentsOf: Self.algorithm.utf8)
        stringToSign.append(UInt8(ascii: "\n"))
        stringToSign.append(contentsOf: time.stamp.utf8)
        stringToSign.append(UInt8(ascii: "\n"))
        stringToSign.append(contentsOf: scope.utf8)
        stringToSign.append(UInt8(ascii: "\n"))
        SigV4Crypto.appendSHA256Hex(of: canonical, to: &stringToSign)
        let key = SigV4SigningKeys.shared.key(credentials: credentials, day: time.day, region: region, service: service)
        var signature: [UInt8] = []
        signature.reserveCapacity(64)
        key.appendHex(of: stringToSign, to: &signature)
        return ByteTrace(canonicalRequest: canonical, stringToSign: stringToSign, signature: signature)
    }
}

/// Derived signing keys, cached per access key, day, region and service as the AWS SDKs do:
/// deriving one costs four HMACs, more than the rest of a token.
final class SigV4SigningKeys: Sendable {
    static let shared = SigV4SigningKeys()
    /// Past this many entries the cache starts over (keys rotate daily; a process signs for few).
    private static let capacity = 32

    private struct Entry: Hashable {
        var accessKeyID: String
        var secret: Secret
        var day: String
        var region: String
        var service: String
    }
    private let keys = Mutex<[Entry: PreparedHMACKey]>([:])

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    func key(credentials: AWSCredentials, day: String, region: String, service: String) -> PreparedHMACKey {
        let entry = Entry(accessKeyID: credentials.accessKeyID, secret: credentials.secretAccessKey,
                          day: day, region: region, service: service)
        if let key = keys.withLock({ $0[entry] }) { return key }
        let secret = Array(("AWS4" + credentials.secretAccessKey.reveal()).utf8)
        let dateKey = Digest.hmacSHA256(key: secret, message: day)
        let regionKey = Digest.hmacSHA256(key: dateKey, message: region)
        let serviceKey = Digest.hmacSHA256(key: regionKey, message: service)
        let key = PreparedHMACKey(Digest.hmacSHA256(key: serviceKey, message: "aws4_request"))
        keys.withLock { keys in
            if keys.count >= Self.capacity { keys.removeAll() }
            keys[entry] = key
        }
        return key
    }
}
