import CloudAuth
import Testing

/// What of an upstream error answer may reach our messages.
@Suite struct UpstreamTextTests {
    @Test func documentedErrorCodesPassAndAnythingElseIsDropped() {
        for code in ["AccessDenied", "ExpiredTokenException", "invalid_grant", "PERMISSION_DENIED", "AADSTS70021", "bad_request_102"] {
            #expect(UpstreamText.code(code) == code)
        }
        for text in [nil, "", "hvs.CAESIJlWp3Ah7DXl1s3qXnDNpVJ6", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "access denied",
                     "AKIA1234567890123456", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "1abc", String(repeating: "a", count: 65)] {
            #expect(UpstreamText.code(text) == nil, "\(text ?? "nil")")
        }
    }

    @Test func excerptsMaskKeysTokensSignaturesAndPEMBlocksAndStayBounded() {
        let hostile = """
            Denied. SecretAccessKey=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY&X-Amz-Signature=5d672d79c15b1316
            -----BEGIN PRIVATE KEY-----
            MIIEvQIBADANBgkqhkiG9w0BAQEFAASC
            -----END PRIVATE KEY-----
            <SessionToken>short</SessionToken> {"password": "hunter2"} seen hvs.CAESIJlWp3Ah7DXl1s3qXnDNpVJ6aAnkJT0Z
            """
        let excerpt = UpstreamText.excerpt(hostile)
        let masked = "Denied. SecretAccessKey=<redacted>&X-Amz-Signature=<redacted> <redacted> "
            + "<SessionToken><redacted></SessionToken> {\"password\": \"<redacted>\"} seen <redacted>"
        #expect(excerpt == masked.prefix(UpstreamText.excerptLimit) + "...")
        #expect(UpstreamText.excerpt(String(hostile.suffix(100))).hasSuffix("seen <redacted>"))
        for secret in ["wJalr", "5d672d79", "MIIE", "short", "hunter2", "hvs."] { #expect(!excerpt.contains(secret)) }
        // Plain sentences pass; long ones are cut.
        #expect(UpstreamText.excerpt("Identity not found") == "Identity not found")
        let long = UpstreamText.excerpt(String(repeating: "the identity is not bound to this role ", count: 10))
        #expect(long.count == UpstreamText.excerptLimit + 3)
        #expect(long.hasSuffix("..."))
    }
}
