import COpenSSL
import Synchronization

/// The two hashes of a SigV4 signature with OpenSSL's algorithms fetched once.
///
/// `Digest.sha256` and `Digest.hmacSHA256` use OpenSSL 3's one-shot calls, which look the
/// algorithm up, allocate a context and (for HMAC) set the key up on every call: more than half
/// the cost of a token. Here SHA-256 is fetched once into one reused context, and an HMAC key is
/// prepared once per derived signing key. Results are identical (the SigV4 suites check them).
enum SigV4Crypto {
    /// An OpenSSL context pointer; only used under its mutex.
    fileprivate struct Context: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    // OpenSSL algorithm handles are immutable and thread-safe once fetched.
    nonisolated(unsafe) private static let sha256Algorithm: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)
    nonisolated(unsafe) fileprivate static let hmacAlgorithm: OpaquePointer? = EVP_MAC_fetch(nil, "HMAC", nil)
    private static let sha256Context = Mutex<Context?>(EVP_MD_CTX_new().map(Context.init))

    /// Appends the lower-case hex SHA-256 of `bytes` to `out`.
    static func appendSHA256Hex(of bytes: [UInt8], to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest in
            let ok = sha256Context.withLock { prepared -> Bool in
                guard let context = prepared?.pointer, let algorithm = sha256Algorithm else { return false }
                var length: UInt32 = 0
                return EVP_DigestInit_ex(context, algorithm, nil) == 1
                    && bytes.withUnsafeBufferPointer { EVP_DigestUpdate(context, $0.baseAddress, $0.count) == 1 }
                    && EVP_DigestFinal_ex(context, digest.baseAddress, &length) == 1 && length == 32
            }
            if ok {
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
    /// An EVP_MAC_CTX initialised with the key; each use re-initialises it without a key, which
    /// OpenSSL answers by restarting from the prepared pads. Guarded: a context is not thread-safe.
    private let context: Mutex<SigV4Crypto.Context?>

    init(_ key: [UInt8]) {
        self.key = key
        var prepared = SigV4Crypto.hmacAlgorithm.flatMap { EVP_MAC_CTX_new($0) }
        if let context = prepared {
            let ok = "SHA256".withCString { digestName in
                "digest".withCString { parameterName in
                    var parameters = [OSSL_PARAM_construct_utf8_string(parameterName, UnsafeMutablePointer(mutating: digestName), 0),
                                      OSSL_PARAM_construct_end()]
                    return key.withUnsafeBufferPointer { EVP_MAC_init(context, $0.baseAddress, $0.count, &parameters) == 1 }
                }
            }
            if !ok {
                EVP_MAC_CTX_free(context)
                prepared = nil
            }
        }
        context = Mutex(prepared.map(SigV4Crypto.Context.init))
    }

    deinit { context.withLock { EVP_MAC_CTX_free($0?.pointer) } }

    /// Appends the lower-case hex HMAC-SHA256 of `message` under this key to `out`.
    func appendHex(of message: [UInt8], to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { mac in
            let ok = context.withLock { prepared -> Bool in
                guard let context = prepared?.pointer else { return false }
                var length = 0
                return EVP_MAC_init(context, nil, 0, nil) == 1
                    && message.withUnsafeBufferPointer { EVP_MAC_update(context, $0.baseAddress, $0.count) == 1 }
                    && EVP_MAC_final(context, mac.baseAddress, &length, 32) == 1 && length == 32
            }
            if ok {
                SigV4Crypto.appendHex(UnsafeBufferPointer(mac), to: &out)
            } else {
                out.append(contentsOf: Encoding.hex(Digest.hmacSHA256(key: key, message: message)).utf8)
            }
        }
    }
}
