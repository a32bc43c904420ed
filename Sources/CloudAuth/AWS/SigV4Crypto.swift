import COpenSSL

/// The two hashes of a SigV4 signature with OpenSSL's algorithms fetched once.
///
/// `Digest.sha256` and `Digest.hmacSHA256` use OpenSSL 3's one-shot calls, which look the
/// algorithm up and (for HMAC) set the key up on every call: more than half the cost of a token.
/// Here SHA-256 is fetched once and an HMAC key is prepared once per derived signing key and
/// copied for each message. Results are identical (the SigV4 suites check them).
enum SigV4Crypto {
    // OpenSSL algorithm handles are immutable and thread-safe once fetched.
    nonisolated(unsafe) private static let sha256Algorithm: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)
    nonisolated(unsafe) fileprivate static let hmacAlgorithm: OpaquePointer? = EVP_MAC_fetch(nil, "HMAC", nil)

    /// Appends the lower-case hex SHA-256 of `bytes` to `out`.
    static func appendSHA256Hex(of bytes: [UInt8], to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest in
            var length: UInt32 = 0
            let ok = sha256Algorithm != nil && bytes.withUnsafeBufferPointer { buffer in
                EVP_Digest(buffer.baseAddress, buffer.count, digest.baseAddress, &length, sha256Algorithm, nil) == 1
            }
            if ok && length == 32 {
                appendHex(UnsafeBufferPointer(digest), to: &out)
            } else {
                out.append(contentsOf: Encoding.hex(Digest.sha256(bytes)).utf8)
            }
        }
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Appends lower-case hex of `bytes` to `out` in place (`Encoding.hex` builds a String).
    fileprivate static func appendHex(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        let digits = hexDigits.utf8Start
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
    }
}

/// An HMAC-SHA256 key set up once (inner and outer pads hashed), used for many messages.
final class PreparedHMACKey: Sendable {
    private let key: [UInt8]
    // An initialised EVP_MAC_CTX; only ever read (duplicated), never updated, after init.
    nonisolated(unsafe) private let template: OpaquePointer?

    init(_ key: [UInt8]) {
        self.key = key
        var context = SigV4Crypto.hmacAlgorithm.flatMap { EVP_MAC_CTX_new($0) }
        if let prepared = context {
            let ok = "SHA256".withCString { digestName in
                "digest".withCString { parameterName in
                    var parameters = [OSSL_PARAM_construct_utf8_string(parameterName, UnsafeMutablePointer(mutating: digestName), 0),
                                      OSSL_PARAM_construct_end()]
                    return key.withUnsafeBufferPointer { EVP_MAC_init(prepared, $0.baseAddress, $0.count, &parameters) == 1 }
                }
            }
            if !ok {
                EVP_MAC_CTX_free(prepared)
                context = nil
            }
        }
        template = context
    }

    deinit { EVP_MAC_CTX_free(template) }

    /// Appends the lower-case hex HMAC-SHA256 of `message` under this key to `out`.
    func appendHex(of message: [UInt8], to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { mac in
            var length = 0
            var ok = false
            if let template, let context = EVP_MAC_CTX_dup(template) {
                ok = message.withUnsafeBufferPointer { EVP_MAC_update(context, $0.baseAddress, $0.count) == 1 }
                    && EVP_MAC_final(context, mac.baseAddress, &length, 32) == 1 && length == 32
                EVP_MAC_CTX_free(context)
            }
            if ok {
                SigV4Crypto.appendHex(UnsafeBufferPointer(mac), to: &out)
            } else {
                out.append(contentsOf: Encoding.hex(Digest.hmacSHA256(key: key, message: message)).utf8)
            }
        }
    }
}
