import Foundation

/// Compact JSON Web Tokens signed with RS256: encoding with an ``RSAKey``, and decoding into
/// header and claims (optionally checking the signature).
///
/// Claims are JSON objects held as `[String: any Sendable]`; numbers are read back as `Double`.
public enum JWT {
    /// A decoded token: its parts as JSON objects and the bytes its signature covers.
    public struct Decoded: Sendable {
        public var header: [String: any Sendable]
        public var claims: [String: any Sendable]
        /// `base64url(header).base64url(claims)`: the signed input.
        public var signingInput: String
        public var signature: [UInt8]

        /// A string claim, or nil when absent or not a string.
        public func string(_ name: String) -> String? { claims[name] as? String }

        /// A numeric date claim (`exp`, `iat`, `nbf`), or nil when absent or not a number.
        public func date(_ name: String) -> Date? {
            JSONFields.number(claims[name]).map { Date(timeIntervalSince1970: $0) }
        }

        /// The `aud` claim as a list, whether the token holds one string or an array.
        public var audiences: [String] {
            if let one = claims["aud"] as? String { return [one] }
            return (claims["aud"] as? [any Sendable])?.compactMap { $0 as? String } ?? []
        }

        /// Whether the signature is a valid RS256 signature of the signed input under `key`.
        public func hasValidSignature(key: RSAKey) -> Bool {
            (header["alg"] as? String) == "RS256"
                && key.verifySHA256(signature: signature, message: Array(signingInput.utf8))
        }
    }

    /// Signs `claims` with `key` (RS256); `keyID` becomes the header's `kid` when given.
    public static func sign(claims: [String: any Sendable], key: RSAKey, keyID: String? = nil) throws -> String {
        var header: [String: any Sendable] = ["alg": "RS256", "typ": "JWT"]
        if let keyID { header["kid"] = keyID }
        let input = try Encoding.base64URL(jsonBytes(header)) + "." + Encoding.base64URL(jsonBytes(claims))
        let signature = try key.signSHA256(Array(input.utf8))
        return input + "." + Encoding.base64URL(signature)
    }

    /// Splits and parses `token` without checking its signature. `source` names where the token
    /// came from, for the error; the error never contains the token.
    public static func decode(_ token: String, source: String) throws -> Decoded {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw CloudAuthError(.malformedResponse, source: source,
                                 "the token is not a JWT (expected three dot-separated parts, found \(parts.count))")
        }
        func object(_ part: Substring, _ what: String) throws -> [String: any Sendable] {
            guard let bytes = Encoding.fromBase64(String(part)),
                  let value = try? JSONSerialization.jsonObject(with: Data(bytes)),
                  let object = value as? [String: Any] else {
                throw CloudAuthError(.malformedResponse, source: source, "the JWT \(what) is not base64url-encoded JSON")
            }
            return sendable(object)
        }
        guard let signature = Encoding.fromBase64(String(parts[2])) else {
            throw CloudAuthError(.malformedResponse, source: source, "the JWT signature is not base64url")
        }
        return Decoded(header: try object(parts[0], "header"), claims: try object(parts[1], "claims"),
                       signingInput: "\(parts[0]).\(parts[1])", signature: signature)
    }

    /// Compact JSON with sorted keys and unescaped slashes, as JWT libraries emit.
    public static func jsonBytes(_ object: [String: any Sendable]) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// Re-types a parsed JSON object; JSONSerialization's values (NSString, NSNumber, NSArray,
    /// NSDictionary, NSNull) are immutable and safe to share.
    static func sendable(_ object: [String: Any]) -> [String: any Sendable] {
        object.mapValues(sendableValue)
    }

    private static func sendableValue(_ value: Any) -> any Sendable {
        switch value {
        case let string as String: return string
        case let number as NSNumber: return number
        case let array as [Any]: return array.map(sendableValue)
        case let object as [String: Any]: return sendable(object)
        default: return NSNull()
        }
    }
}
