internal import COpenSSL
import Synchronization

/// SHA-256 and HMAC-SHA256 over libcrypto, constant-time comparison and random bytes.
///
/// The algorithms are fetched from OpenSSL once. OpenSSL 3's one-shot `SHA256()` and `HMAC()`
/// look the algorithm up by name and build a context on every call, which costs more than hashing
/// a short message; SigV4 hashes and MACs once per token it signs.
public enum Digest {
    /// Length in bytes of a SHA-256 digest and of an HMAC-SHA256 tag.
    public static let sha256Length = 32

    /// The SHA-256 of `bytes`.
    public static func sha256<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: sha256Length) { digest, count in
            withContiguousBytes(of: bytes) { sha256($0, into: UnsafeMutableRawBufferPointer(digest)) }
            count = sha256Length
        }
    }

    /// The SHA-256 of the UTF-8 bytes of `text`.
    public static func sha256(_ text: String) -> [UInt8] { sha256(Array(text.utf8)) }

    /// HMAC-SHA256 of `message` under `key`.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: sha256Length) { tag, count in
            message.withUnsafeBytes { message in
                key.withUnsafeBytes { HMACKey.authenticateOnce(message, key: $0, into: UnsafeMutableRawBufferPointer(tag)) }
            }
            count = sha256Length
        }
    }

    /// HMAC-SHA256 of the UTF-8 bytes of `message` under `key`.
    public static func hmacSHA256(key: [UInt8], message: String) -> [UInt8] {
        hmacSHA256(key: key, message: Array(message.utf8))
    }

    /// Compares two byte strings in time that depends only on their lengths.
    public static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        if lhs.isEmpty { return true }
        return lhs.withUnsafeBytes { l in
            rhs.withUnsafeBytes { r in CRYPTO_memcmp(l.baseAddress, r.baseAddress, l.count) == 0 }
        }
    }

    /// `count` bytes from OpenSSL's CSPRNG.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        if count > 0 { precondition(RAND_bytes(&out, Int32(count)) == 1, "RAND_bytes failed") }
        return out
    }

    // MARK: Without allocation

    /// Writes the SHA-256 of `bytes` to the first 32 bytes of `digest`.
    static func sha256(_ bytes: UnsafeRawBufferPointer, into digest: UnsafeMutableRawBufferPointer) {
        precondition(digest.count >= sha256Length)
        // The shared context saves allocating one; a caller that finds it busy makes its own.
        let done = sharedSHA256Context.withLockIfAvailable { shared in
            shared.map { sha256(bytes, into: digest, context: $0.pointer) }
        }
        if let hashed = done ?? nil {
            precondition(hashed, "libcrypto SHA-256 failed")
            return
        }
        let context = EVP_MD_CTX_new()
        defer { EVP_MD_CTX_free(context) }
        precondition(context.map { sha256(bytes, into: digest, context: $0) } == true, "libcrypto SHA-256 failed")
    }

    private static func sha256(_ bytes: UnsafeRawBufferPointer, into digest: UnsafeMutableRawBufferPointer,
                               context: OpaquePointer) -> Bool {
        var length: UInt32 = 0
        return EVP_DigestInit_ex(context, sha256Algorithm.pointer, nil) == 1
            && EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1
            && EVP_DigestFinal_ex(context, digest.baseAddress?.assumingMemoryBound(to: UInt8.self), &length) == 1
            && length == sha256Length
    }

    /// An HMAC-SHA256 key set up once (its inner and outer pads hashed) for many messages.
    final class HMACKey: Sendable {
        private let key: [UInt8]
        /// A context initialised with the key. Each use re-initialises it without a key, which
        /// OpenSSL answers by restarting from the prepared pads; a caller that finds it busy
        /// (another thread signing with the same key) sets up a context of its own.
        private let prepared: Mutex<Handle?>

        init(_ key: [UInt8]) {
            self.key = key
            var context = EVP_MAC_CTX_new(hmacAlgorithm.pointer)
            if let made = context, !key.withUnsafeBytes({ Self.initialise(made, key: $0) }) {
                EVP_MAC_CTX_free(made)
                context = nil
            }
            prepared = Mutex(context.map(Handle.init))
        }

        deinit { prepared.withLock { EVP_MAC_CTX_free($0?.pointer) } }

        /// Writes the HMAC-SHA256 of `message` under this key to the first 32 bytes of `tag`.
        func authenticate(_ message: UnsafeRawBufferPointer, into tag: UnsafeMutableRawBufferPointer) {
            precondition(tag.count >= sha256Length)
            let done = prepared.withLockIfAvailable { prepared in
                prepared.map { EVP_MAC_init($0.pointer, nil, 0, nil) == 1 && Self.finish($0.pointer, message, into: tag) }
            }
            if let authenticated = done ?? nil {
                precondition(authenticated, "libcrypto HMAC-SHA256 failed")
                return
            }
            key.withUnsafeBytes { Self.authenticateOnce(message, key: $0, into: tag) }
        }

        /// One HMAC-SHA256 with a context set up for it alone.
        static func authenticateOnce(_ message: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer,
                                     into tag: UnsafeMutableRawBufferPointer) {
            let context = EVP_MAC_CTX_new(hmacAlgorithm.pointer)
            defer { EVP_MAC_CTX_free(context) }
            let done = context.map { initialise($0, key: key) && finish($0, message, into: tag) }
            precondition(done == true, "libcrypto HMAC-SHA256 failed")
        }

        private static func initialise(_ context: OpaquePointer, key: UnsafeRawBufferPointer) -> Bool {
            "SHA256".withCString { digestName in
                "digest".withCString { parameterName in
                    var parameters = [OSSL_PARAM_construct_utf8_string(parameterName, UnsafeMutablePointer(mutating: digestName), 0),
                                      OSSL_PARAM_construct_end()]
                    // A zero-length key still needs a non-null pointer.
                    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1) { empty in
                        let bytes = key.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(empty.baseAddress!)
                        return EVP_MAC_init(context, bytes, key.count, &parameters) == 1
                    }
                }
            }
        }

        private static func finish(_ context: OpaquePointer, _ message: UnsafeRawBufferPointer,
                                   into tag: UnsafeMutableRawBufferPointer) -> Bool {
            var length = 0
            return EVP_MAC_update(context, message.baseAddress?.assumingMemoryBound(to: UInt8.self), message.count) == 1
                && EVP_MAC_final(context, tag.baseAddress?.assumingMemoryBound(to: UInt8.self), &length, sha256Length) == 1
                && length == sha256Length
        }
    }

    // MARK: OpenSSL handles

    /// An OpenSSL pointer. The fetched algorithms are immutable and thread-safe; a context is
    /// only used under the mutex that holds it.
    struct Handle: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private static let sha256Algorithm = fetched(EVP_MD_fetch(nil, "SHA256", nil), "SHA256")
    private static let hmacAlgorithm = fetched(EVP_MAC_fetch(nil, "HMAC", nil), "HMAC")
    private static let sharedSHA256Context = Mutex<Handle?>(EVP_MD_CTX_new().map(Handle.init))

    private static func fetched(_ algorithm: OpaquePointer?, _ name: String) -> Handle {
        guard let algorithm else { preconditionFailure("libcrypto has no \(name) (is the default provider missing?)") }
        return Handle(pointer: algorithm)
    }

    /// Runs `body` on `bytes` in contiguous memory, copying only when they are not.
    private static func withContiguousBytes<Bytes: Collection<UInt8>, Result>(
        of bytes: Bytes, _ body: (UnsafeRawBufferPointer) -> Result
    ) -> Result {
        if let result = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return result }
        return Array(bytes).withUnsafeBytes(body)
    }
}
