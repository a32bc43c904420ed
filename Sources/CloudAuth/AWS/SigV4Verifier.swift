import Foundation

/// Checks AWS Signature Version 4 the way an AWS service does, for requests signed in the
/// `Authorization` header and for presigned URLs (the IAM database and cache tokens among them).
///
/// The signature is recomputed with ``SigV4Signer`` from the secret that `keys` returns for the
/// access key id, over exactly the headers the request says it signed, and compared in constant
/// time. Rejections carry the error code AWS answers with, and never the secret or signature.
public struct SigV4Verifier: Sendable {
    /// What the verifier knows of an access key it issued.
    public struct IssuedKey: Sendable {
        public var secretAccessKey: Secret
        /// Temporary keys only: the request must carry this token.
        public var sessionToken: Secret?
        /// Temporary keys only: requests signed with the key fail from then on.
        public var expiresAt: Date?

        public init(secretAccessKey: Secret, sessionToken: Secret? = nil, expiresAt: Date? = nil) {
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
            self.expiresAt = expiresAt
        }
    }

    /// A valid signature: who signed, for what, and until when a presigned one is good.
    public struct Signature: Sendable {
        public var accessKeyID: String
        public var region: String
        public var service: String
        public var signedAt: Date
        /// Presigned requests only: `X-Amz-Date` plus `X-Amz-Expires`.
        public var expiresAt: Date?
        /// The request's own query parameters (without the presigning ones) exactly as the
        /// signature covers them: read parameters from here, never from another decoding.
        public var parameters: [(name: String, value: String)]
    }

    /// Why a request was refused: AWS's error code and a message in AWS's words.
    public struct Rejection: Error, Sendable, CustomStringConvertible {
        /// `SignatureDoesNotMatch`, `InvalidClientTokenId`, `ExpiredToken`, `MissingAuthenticationToken`,
        /// `IncompleteSignature` or `RequestExpired`.
        public var code: String
        public var message: String
        public var description: String { "\(code): \(message)" }
    }

    /// How far a header-signed request's time may be from the verifier's clock (AWS: 15 minutes).
    public var maxClockSkew: TimeInterval = 900
    private let keys: @Sendable (String) -> IssuedKey?

    /// `keys` looks up an access key id; nil means the key is unknown.
    public init(keys: @escaping @Sendable (String) -> IssuedKey?) {
        self.keys = keys
    }

    /// Verifies a request as received: `path` and `query` as sent on the request line (percent-encoded).
    public func verify(method: String, path: String, query: String?, headers: HTTPHeaders, body: [UInt8],
                       now: Date) -> Result<Signature, Rejection> {
        Result { try check(method: method, path: path, query: query, headers: headers, body: body, now: now) }
            .mapError { $0 as? Rejection ?? Rejection(code: "IncompleteSignature", message: "\($0)") }
    }

    /// Verifies an IAM `connect` token (`host[:port]/?Action=connect&...&X-Amz-Signature=...`), which is
    /// a presigned `GET https://host[:port]/` without its scheme.
    public func verifyToken(_ token: String, now: Date) -> Result<Signature, Rejection> {
        let parts = token.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let slash = parts[0].firstIndex(of: "/"), parts[0][slash...] == "/" else {
            return .failure(Rejection(code: "IncompleteSignature", message: "the token is not host[:port]/?query"))
        }
        let authority = String(parts[0][..<slash]).lowercased()
        let host = authority.hasSuffix(":443") ? String(authority.dropLast(4)) : authority
        return verify(method: "GET", path: "/", query: String(parts[1]), headers: ["host": host], body: [], now: now)
    }

    private struct Claimed {
        var accessKeyID: String
        var day: String
        var region: String
        var service: String
        var signedHeaders: [String]
        var signature: String
        var stamp: String
    }

    private static let presignParameters: Set<String> = [
        "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
        "X-Amz-Security-Token", "X-Amz-Signature",
    ]

    private func check(method: String, path: String, query: String?, headers: HTTPHeaders, body: [UInt8],
                       now: Date) throws -> Signature {
        let parameters = SigV4Canonical.decodeQuery(query ?? "")
        func parameter(_ name: String) -> String? { parameters.first { $0.name == name }?.value }
        let presigned = parameter("X-Amz-Algorithm") != nil
        if presigned {
            for name in Self.presignParameters where parameters.filter({ $0.name == name }).count > 1 {
                throw Rejection(code: "IncompleteSignature", message: "\(name) appears more than once")
            }
        }
        let claimed: Claimed
        let sessionToken: String?
        var expires: Int?
        if presigned {
            guard parameter("X-Amz-Algorithm") == SigV4Signer.algorithm else {
                throw Rejection(code: "IncompleteSignature", message: "X-Amz-Algorithm must be \(SigV4Signer.algorithm)")
            }
            guard let credential = parameter("X-Amz-Credential"), let stamp = parameter("X-Amz-Date"),
                  let names = parameter("X-Amz-SignedHeaders"), let signature = parameter("X-Amz-Signature"),
                  let lifetime = parameter("X-Amz-Expires").flatMap(Self.decimal) else {
                throw Rejection(code: "IncompleteSignature", message: "a presigned request needs X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature")
            }
            guard (1...604_800).contains(lifetime) else {
                throw Rejection(code: "IncompleteSignature", message: "X-Amz-Expires must be between 1 and 604800 seconds")
            }
            claimed = try Self.claim(credential: credential, signedHeaders: names, signature: signature, stamp: stamp)
            sessionToken = parameter("X-Amz-Security-Token")
            expires = lifetime
        } else {
            guard let authorization = headers["authorization"] else {
                throw Rejection(code: "MissingAuthenticationToken", message: "Request is missing Authentication Token")
            }
            guard let stamp = headers["x-amz-date"] else {
                throw Rejection(code: "IncompleteSignature", message: "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
            }
            claimed = try Self.claim(authorization: authorization, stamp: stamp)
            sessionToken = headers["x-amz-security-token"]
        }
        guard let signedAt = Self.date(claimed.stamp), claimed.stamp.hasPrefix(claimed.day) else {
            throw Rejection(code: "IncompleteSignature", message: "X-Amz-Date must be yyyyMMddTHHmmssZ, on the day of the credential scope")
        }
        guard let key = keys(claimed.accessKeyID) else {
            throw Rejection(code: "InvalidClientTokenId", message: "The security token included in the request is invalid.")
        }
        if let issued = key.sessionToken?.reveal() {
            guard let sessionToken, Digest.constantTimeEquals(Array(sessionToken.utf8), Array(issued.utf8)) else {
                throw Rejection(code: "InvalidClientTokenId", message: "The security token included in the request is invalid.")
            }
        }
        if let keyExpiry = key.expiresAt, now >= keyExpiry {
            throw Rejection(code: "ExpiredToken", message: "The security token included in the request is expired")
        }
        if let expires {
            if now > signedAt.addingTimeInterval(TimeInterval(expires)) {
                throw Rejection(code: "RequestExpired", message: "Request has expired: signed \(claimed.stamp), valid \(expires) seconds")
            }
            if signedAt > now.addingTimeInterval(maxClockSkew) {
                throw Rejection(code: "RequestExpired", message: "Request is not yet valid: signed \(claimed.stamp), more than 15 min. ahead of \(AmzDate(now).stamp)")
            }
        } else if abs(now.timeIntervalSince(signedAt)) > maxClockSkew {
            let earlier = now > signedAt
            throw Rejection(code: "SignatureDoesNotMatch", message: earlier
                ? "Signature expired: \(claimed.stamp) is now earlier than \(AmzDate(now.addingTimeInterval(-maxClockSkew)).stamp) (\(AmzDate(now).stamp) - 15 min.)"
                : "Signature not yet current: \(claimed.stamp) is still later than \(AmzDate(now.addingTimeInterval(maxClockSkew)).stamp) (\(AmzDate(now).stamp) + 15 min.)")
        }

        // The request as the signer saw it: the signed headers only, the query without the signature's own parameters.
        var signedHeaders = HTTPHeaders()
        for name in claimed.signedHeaders {
            let values = headers.fields.filter { $0.name.lowercased() == name }.map(\.value)
            guard !values.isEmpty else {
                throw Rejection(code: "SignatureDoesNotMatch", message: "The request does not carry the signed header '\(name)'.")
            }
            for value in values { signedHeaders.add(name, value) }
        }
        let ownQuery = parameters.filter { !(presigned && Self.presignParameters.contains($0.name)) }
        var queryBytes: [UInt8] = []
        SigV4Canonical.QueryParameters(ownQuery).appendQuery(to: &queryBytes)
        // The path as sent: the signer encodes it once more, as AWS canonicalises it for every service but S3.
        let request = SigV4Request(method: method,
                                   url: EndpointURL(scheme: "https", host: "signed.invalid", port: nil, path: path,
                                                    query: String(decoding: queryBytes, as: UTF8.self)),
                                   headers: signedHeaders, body: body)
        let tokenSigned = presigned ? sessionToken != nil : claimed.signedHeaders.contains("x-amz-security-token")
        let signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: claimed.accessKeyID, secretAccessKey: key.secretAccessKey,
                                        sessionToken: tokenSigned ? sessionToken.map(Secret.init) : nil, source: "verifier"),
            region: claimed.region, service: claimed.service, options: SigV4Signer.Options(sessionToken: .signed))
        let expected = if let expires {
            signer.presignWithTrace(request, expires: expires, at: signedAt).trace.signature
        } else {
            signer.signWithTrace(request, at: signedAt).trace.signature
        }
        guard Digest.constantTimeEquals(Array(expected.utf8), Array(claimed.signature.utf8)) else {
            throw Rejection(code: "SignatureDoesNotMatch", message: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
        }
        return Signature(accessKeyID: claimed.accessKeyID, region: claimed.region, service: claimed.service,
                         signedAt: signedAt, expiresAt: expires.map { signedAt.addingTimeInterval(TimeInterval($0)) },
                         parameters: ownQuery)
    }

    /// `AWS4-HMAC-SHA256 Credential=AKID/day/region/service/aws4_request, SignedHeaders=a;b, Signature=hex`.
    private static func claim(authorization: String, stamp: String) throws -> Claimed {
        let prefix = SigV4Signer.algorithm + " "
        guard authorization.hasPrefix(prefix) else {
            throw Rejection(code: "IncompleteSignature", message: "Authorization must start with \(SigV4Signer.algorithm)")
        }
        var fields: [String: String] = [:]
        for piece in authorization.dropFirst(prefix.count).split(separator: ",") {
            let pair = piece.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
        }
        guard let credential = fields["Credential"], let names = fields["SignedHeaders"], let signature = fields["Signature"] else {
            throw Rejection(code: "IncompleteSignature", message: "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.")
        }
        let claimed = try claim(credential: credential, signedHeaders: names, signature: signature, stamp: stamp)
        guard claimed.signedHeaders.contains("x-amz-date") else {
            throw Rejection(code: "SignatureDoesNotMatch", message: "'X-Amz-Date' must be a signed header.")
        }
        return claimed
    }

    private static func claim(credential: String, signedHeaders: String, signature: String, stamp: String) throws -> Claimed {
        let scope = credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard scope.count == 5, scope[4] == "aws4_request", !scope[0].isEmpty else {
            throw Rejection(code: "IncompleteSignature", message: "Credential must be AccessKeyId/yyyyMMdd/region/service/aws4_request")
        }
        let names = signedHeaders.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard names.contains("host") else {
            throw Rejection(code: "SignatureDoesNotMatch", message: "'Host' must be a signed header.")
        }
        // Exactly what a signer writes: lower case, sorted, unique, none of the headers it never signs.
        guard names == names.map({ $0.lowercased() }), names == Array(Set(names)).sorted(),
              names.allSatisfy({ !$0.isEmpty && !SigV4Signer.unsignedHeaders.contains($0) }) else {
            throw Rejection(code: "SignatureDoesNotMatch", message: "SignedHeaders must be lower-case header names, sorted, each once, none of them unsignable.")
        }
        return Claimed(accessKeyID: scope[0], day: scope[1], region: scope[2], service: scope[3],
                       signedHeaders: names, signature: signature, stamp: stamp)
    }

    /// A plain decimal (digits only), as `X-Amz-Expires` must be.
    private static func decimal(_ text: String) -> Int? {
        guard !text.isEmpty, text.count <= 9, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int(text)
    }

    /// `yyyyMMdd'T'HHmmss'Z'` as a date.
    static func date(_ stamp: String) -> Date? {
        let digits = Array(stamp.utf8)
        guard digits.count == 16, digits[8] == UInt8(ascii: "T"), digits[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in digits[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm), the inverse of `AmzDate`.
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let date = Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3600 + minute * 60 + second))
        return AmzDate(date).stamp == stamp ? date : nil
    }
}
