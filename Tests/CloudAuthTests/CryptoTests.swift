import CloudAuth
import Foundation
import Testing

/// Known-answer tests for the libcrypto wrappers and codecs.
struct CryptoTests {
    @Test func sha256KnownAnswers() {
        #expect(Encoding.hex(Digest.sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Encoding.hex(Digest.sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// RFC 4231 test cases 1 and 2.
    @Test func hmacSHA256RFC4231() {
        let key1 = [UInt8](repeating: 0x0b, count: 20)
        #expect(Encoding.hex(Digest.hmacSHA256(key: key1, message: "Hi There"))
            == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(Encoding.hex(Digest.hmacSHA256(key: Array("Jefe".utf8), message: "what do ya want for nothing?"))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func constantTimeEquals() {
        #expect(Digest.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!Digest.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!Digest.constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(Digest.constantTimeEquals([], []))
    }

    /// RFC 4648 section 10 vectors, both alphabets, and a round trip over every byte value.
    @Test func base64RFC4648() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==",
                       "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Encoding.base64(plain) == encoded)
            #expect(Encoding.fromBase64(encoded) == Array(plain.utf8))
            #expect(Encoding.base64URL(Array(plain.utf8)) == encoded.replacingOccurrences(of: "=", with: ""))
        }
        let all = (0...255).map { UInt8($0) }
        #expect(Encoding.fromBase64(Encoding.base64(all)) == all)
        #expect(Encoding.fromBase64(Encoding.base64URL(all)) == all)
        #expect(Encoding.base64URL([0xfb, 0xff]) == "-_8")
        #expect(Encoding.fromBase64("not base64!") == nil)
    }

    @Test func hexRoundTrip() {
        #expect(Encoding.hex([0x00, 0xab, 0xff]) == "00abff")
        #expect(Encoding.fromHex("00ABff") == [0x00, 0xab, 0xff])
        #expect(Encoding.fromHex("abc") == nil)
        #expect(Encoding.fromHex("zz") == nil)
    }

    @Test func rsaSignVerifyAndPEMRoundTrip() throws {
        let key = try RSAKey.generate()
        let message = Array("header.payload".utf8)
        let signature = try key.signSHA256(message)
        #expect(signature.count == 256)
        #expect(key.verifySHA256(signature: signature, message: message))
        #expect(!key.verifySHA256(signature: signature, message: Array("header.payloaX".utf8)))

        let reloaded = try RSAKey(pem: key.pemPKCS8().reveal(), source: "test")
        #expect(reloaded.verifySHA256(signature: signature, message: message))
        // RSASSA-PKCS1-v1_5 is deterministic: the same key signs the same bytes the same way.
        #expect(try reloaded.signSHA256(message) == signature)
        let (modulus, exponent) = key.publicComponents()
        #expect(modulus.count == 256)
        #expect(exponent == [0x01, 0x00, 0x01])
    }

    @Test func malformedPEMIsAClearError() {
        let error = #expect(throws: CloudAuthError.self) {
            try RSAKey(pem: "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", source: "key.json private_key")
        }
        #expect(error?.code == .crypto)
        #expect(error?.description.contains("key.json private_key") == true)
    }

    @Test func secretsNeverPrint() {
        let secret = Secret("hunter2")
        #expect("\(secret)" == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("hunter2"))
        #expect(secret.reveal() == "hunter2")
    }
}
