import Foundation

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
        let query = SigV4Canonical.query(SigV4Canonical.decodeQuery(request.url.query ?? ""))
        let trace = makeTrace(method: request.method, path: request.url.path, canonicalQuery: query,
                              headers: headers, bodyHash: bodyHash, time: time)
        signed.headers.replace("Authorization",
                               "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope(time)), "
                               + "SignedHeaders=\(headers.signedNames), Signature=\(trace.signature)")
        if let token = credentials.sessionToken, options.sessionToken == .afterSigning {
            signed.headers.replace("X-Amz-Security-Token", token.reveal())
        }
        return (signed, trace)
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
        let time = AmzDate(secondsSince1970: Int64(date.timeIntervalSince1970.rounded(.down)))
        let headers = canonicalHeaders(of: request)
        var authParameters: [(name: String, value: String)] = [
            ("X-Amz-Algorithm", Self.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope(time))"),
            ("X-Amz-Date", time.stamp),
            ("X-Amz-Expires", String(expires)),
            ("X-Amz-SignedHeaders", headers.signedNames),
        ]
        let token = credentials.sessionToken?.reveal()
        if let token, options.sessionToken == .signed { authParameters.append(("X-Amz-Security-Token", token)) }
        let ownParameters = SigV4Canonical.decodeQuery(request.url.query ?? "")
        let canonicalQuery = SigV4Canonical.query(ownParameters + authParameters)
        let trace = makeTrace(method: request.method, path: request.url.path, canonicalQuery: canonicalQuery,
                              headers: headers, bodyHash: hashedBody(request.body), time: time)
        if let token, options.sessionToken == .afterSigning { authParameters.append(("X-Amz-Security-Token", token)) }
        authParameters.append(("X-Amz-Signature", trace.signature))

        var query = ""
        query.reserveCapacity(512)
        for (index, parameter) in (ownParameters + authParameters).enumerated() {
            if index > 0 { query += "&" }
            query += SigV4Canonical.encode(parameter.name)
            query += "="
            query += SigV4Canonical.encode(parameter.value)
        }
        var path: [UInt8] = []
        SigV4Canonical.appendEncoded(request.url.path.utf8, to: &path, keepSlash: true)
        let url = "\(request.url.scheme)://\(request.url.hostHeader)\(String(decoding: path, as: UTF8.self))?\(query)"
        return (PresignedURL(url: Secret(url), query: Secret(query)), trace)
    }

    // MARK: Shared steps

    private struct CanonicalHeaders {
        var block: String
        var signedNames: String
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
        var block = ""
        var names = ""
        for (index, field) in SigV4Canonical.headers(fields).enumerated() {
            block += field.name
            block += ":"
            block += field.value
            block += "\n"
            if index > 0 { names += ";" }
            names += field.name
        }
        return CanonicalHeaders(block: block, signedNames: names)
    }

    private func hashedBody(_ body: [UInt8]) -> String {
        body.isEmpty ? Self.emptyBodyHash : Encoding.hex(Digest.sha256(body))
    }

    private func scope(_ time: AmzDate) -> String {
        "\(time.day)/\(region)/\(service)/aws4_request"
    }

    private func makeTrace(method: String, path: String, canonicalQuery: String, headers: CanonicalHeaders,
                           bodyHash: String, time: AmzDate) -> Trace {
        let canonicalRequest = method.uppercased() + "\n"
            + SigV4Canonical.uri(path, normalize: options.normalizePath) + "\n"
            + canonicalQuery + "\n"
            + headers.block + "\n"
            + headers.signedNames + "\n"
            + bodyHash
        let stringToSign = Self.algorithm + "\n" + time.stamp + "\n" + scope(time) + "\n"
            + Encoding.hex(Digest.sha256(canonicalRequest))
        let signature = Encoding.hex(Digest.hmacSHA256(key: signingKey(day: time.day), message: stringToSign))
        return Trace(canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature)
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    private func signingKey(day: String) -> [UInt8] {
        let secret = Array(("AWS4" + credentials.secretAccessKey.reveal()).utf8)
        let dateKey = Digest.hmacSHA256(key: secret, message: day)
        let regionKey = Digest.hmacSHA256(key: dateKey, message: region)
        let serviceKey = Digest.hmacSHA256(key: regionKey, message: service)
        return Digest.hmacSHA256(key: serviceKey, message: "aws4_request")
    }
}
