internal import COpenSSL

/// An RSA private key held by libcrypto, for RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signatures.
///
/// Owns one `EVP_PKEY`, freed when the key goes away. The key material never leaves libcrypto
/// except through ``pemPKCS8()``, which emulators and tests use to hand a key to a client.
public final class RSAKey: @unchecked Sendable {
    // Immutable after init; libcrypto allows concurrent use of a key for signing.
    private let pkey: OpaquePointer

    private init(pkey: OpaquePointer) { self.pkey = pkey }

    deinit { EVP_PKEY_free(pkey) }

    /// Parses a PEM private key (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`).
    /// `source` names where the PEM came from, for the error message.
    public convenience init(pem: String, source: String) throws {
        let bytes = Array(pem.utf8)
        let key: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        ERR_clear_error()
        guard let key else {
            throw CloudAuthError(.crypto, source: source, "the private key is not a PEM-encoded RSA private key",
                                 remedy: "expected a PEM block of type PRIVATE KEY or RSA PRIVATE KEY")
        }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else {
            EVP_PKEY_free(key)
            throw CloudAuthError(.crypto, source: source, "the private key is not an RSA key",
                                 remedy: "RS256 needs an RSA key")
        }
        self.init(pkey: key)
    }

    /// Generates a new RSA key of `bits` bits (2048 unless told otherwise).
    public static func generate(bits: Int = 2048) throws -> RSAKey {
        guard let key = credagent_EVP_RSA_gen(UInt32(bits)) else {
            throw CloudAuthError(.crypto, source: "libcrypto", "RSA key generation failed")
        }
        return RSAKey(pkey: key)
    }

    /// RS256 signature of `message`.
    public func signSHA256(_ message: [UInt8]) throws -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else {
            throw CloudAuthError(.crypto, source: "libcrypto", "cannot allocate a digest context")
        }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, pkey) == 1 else {
            ERR_clear_error()
            throw CloudAuthError(.crypto, source: "libcrypto", "cannot start an RS256 signature")
        }
        var length = 0
        let ok = message.withUnsafeBufferPointer { buffer -> Bool in
            guard EVP_DigestSign(context, nil, &length, buffer.baseAddress, buffer.count) == 1 else { return false }
            return true
        }
        guard ok else {
            ERR_clear_error()
            throw CloudAuthError(.crypto, source: "libcrypto", "RS256 signing failed")
        }
        var signature = [UInt8](repeating: 0, count: length)
        let signed = message.withUnsafeBufferPointer { buffer in
            EVP_DigestSign(context, &signature, &length, buffer.baseAddress, buffer.count) == 1
        }
        guard signed else {
            ERR_clear_error()
            throw CloudAuthError(.crypto, source: "libcrypto", "RS256 signing failed")
        }
        return Array(signature.prefix(length))
    }

    /// Checks an RS256 signature of `message` against this key's public half.
    public func verifySHA256(signature: [UInt8], message: [UInt8]) -> Bool {
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, pkey) == 1 else {
            ERR_clear_error()
            return false
        }
        let result = signature.withUnsafeBufferPointer { sig in
            message.withUnsafeBufferPointer { msg in
                EVP_DigestVerify(context, sig.baseAddress, sig.count, msg.baseAddress, msg.count)
            }
        }
        ERR_clear_error()
        return result == 1
    }

    /// The public modulus and exponent, big-endian, as a JWK's `n` and `e` carry them.
    public func publicComponents() -> (modulus: [UInt8], exponent: [UInt8]) {
        (bignumParameter(OSSL_PKEY_PARAM_RSA_N), bignumParameter(OSSL_PKEY_PARAM_RSA_E))
    }

    /// The private key as PKCS#8 PEM. Only for handing a generated key to a client under test.
    public func pemPKCS8() -> Secret {
        guard let bio = BIO_new(BIO_s_mem()) else { return Secret("") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, pkey, nil, nil, 0, nil, nil) == 1 else { return Secret("") }
        var pointer: UnsafeMutablePointer<CChar>?
        let length = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &pointer)
        guard let pointer, length > 0 else { return Secret("") }
        let bytes = UnsafeRawBufferPointer(start: pointer, count: Int(length))
        return Secret(String(decoding: bytes, as: UTF8.self))
    }

    private func bignumParameter(_ name: UnsafePointer<CChar>) -> [UInt8] {
        var bignum: OpaquePointer?
        guard EVP_PKEY_get_bn_param(pkey, name, &bignum) == 1, let bignum else { return [] }
        defer { BN_free(bignum) }
        let count = (BN_num_bits(bignum) + 7) / 8
        var out = [UInt8](repeating: 0, count: Int(count))
        _ = BN_bn2bin(bignum, &out)
        return out
    }
}
