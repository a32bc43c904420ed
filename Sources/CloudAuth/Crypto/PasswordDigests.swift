internal import COpenSSL

extension Digest {
    /// PBKDF2 with HMAC-SHA256 (RFC 8018) over libcrypto: `length` bytes derived from `password`
    /// and `salt` in `iterations` rounds. SCRAM-SHA-256 derives its salted password this way.
    /// Returns nil when libcrypto refuses the parameters (zero iterations, a length it cannot make).
    public static func pbkdf2SHA256(password: [UInt8], salt: [UInt8], iterations: Int, length: Int = sha256Length) -> [UInt8]? {
        guard iterations > 0, iterations <= Int(Int32.max), length > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: length)
        let status = password.withUnsafeBytes { password in
            salt.withUnsafeBytes { salt in
                PKCS5_PBKDF2_HMAC(password.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(password.count),
                                  salt.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(salt.count),
                                  Int32(iterations), EVP_sha256(), Int32(length), &out)
            }
        }
        return status == 1 ? out : nil
    }

    /// The MD5 of `bytes`, for protocols that still ask for it (PostgreSQL's `md5` password
    /// exchange); never for anything new. Nil when libcrypto has MD5 disabled (FIPS mode).
    public static func md5<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [UInt8]? {
        let input = Array(bytes)
        var out = [UInt8](repeating: 0, count: 16)
        var length: UInt32 = 0
        guard let algorithm = EVP_MD_fetch(nil, "MD5", nil) else {
            ERR_clear_error()
            return nil
        }
        defer { EVP_MD_free(algorithm) }
        let status = input.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &out, &length, algorithm, nil) }
        return status == 1 && length == 16 ? out : nil
    }
}
