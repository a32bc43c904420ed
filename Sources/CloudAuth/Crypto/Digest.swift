internal import COpenSSL
internal import Crypto
import Synchronization

/// SHA-256 and HMAC-SHA256, constant-time comparison and random bytes.
///
/// The hashes and MACs are swift-crypto's (BoringSSL, compiled into the binary): nothing to load or
/// set up before the first one. Over the system's libcrypto they cost `credagent token rds` a third
/// of its run before any byte was hashed: loading the library, reading OpenSSL's configuration and
/// fetching the algorithms from its provider (docs/OPERATIONS.md, "Probes"). Comparison, random
/// bytes, PBKDF2, MD5 and RSA stay on libcrypto, which TLS loads anyway.
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
            message.withUnsafeBytes { HMACKey(key).authenticate($0, into: UnsafeMutableRawBufferPointer(tag)) }
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
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        hasher.finalize().withUnsafeBytes { digest.copyMemory(from: $0) }
    }

    /// An HMAC-SHA256 key set up once (its inner and outer pads hashed) for many messages: each
    /// message starts from a copy of that state.
    final class HMACKey: @unchecked Sendable {
        /// Never changed after `init`, only copied (a value: two hash states); swift-crypto does
        /// not declare it `Sendable`.
        private let prepared: HMAC<SHA256>

        init(_ key: [UInt8]) {
            prepared = HMAC<SHA256>(key: SymmetricKey(data: key))
        }

        /// Writes the HMAC-SHA256 of `message` under this key to the first 32 bytes of `tag`.
        func authenticate(_ message: UnsafeRawBufferPointer, into tag: UnsafeMutableRawBufferPointer) {
            precondition(tag.count >= sha256Length)
            var mac = prepared
            mac.update(data: message)
            mac.finalize().withUnsafeBytes { tag.copyMemory(from: $0) }
        }
    }

    /// Runs `body` on `bytes` in contiguous memory, copying only when they are not.
    private static func withContiguousBytes<Bytes: Collection<UInt8>, Result>(
        of bytes: Bytes, _ body: (UnsafeRawBufferPointer) -> Result
    ) -> Result {
        if let result = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return result }
        return Array(bytes).withUnsafeBytes(body)
    }
}
