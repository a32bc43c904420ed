import Foundation
import Testing
@testable import CloudAuth

/// The small readers for STS XML, credential JSON and AWS timestamps.
struct AWSResponseParsingTests {
    @Test("STS XML: element text with entities decoded; absent elements are nil")
    func xmlText() {
        let xml = """
        <AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>
        <AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>a/b+c</SecretAccessKey>
        <SessionToken>x&amp;y&lt;z&gt;&#65;&#x42;&quot;&apos;&bogus;</SessionToken>
        <Expiration>2026-11-22T05:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>
        """
        #expect(AWSResponseParsing.xmlText(xml, "AccessKeyId") == "ASIAEXAMPLE")
        #expect(AWSResponseParsing.xmlText(xml, "SecretAccessKey") == "a/b+c")
        #expect(AWSResponseParsing.xmlText(xml, "SessionToken") == "x&y<z>AB\"'&bogus;")
        #expect(AWSResponseParsing.xmlText(xml, "Code") == nil)
    }

    @Test("amz dates from seconds since 1970, across leap days and centuries", arguments: [
        (0, "19700101T000000Z"), (951_782_400, "20000229T000000Z"), (1_440_938_160, "20150830T123600Z"),
        (4_107_542_399, "21000228T235959Z"), (4_107_542_400, "21000301T000000Z"),
    ])
    func amzDate(_ seconds: Int64, _ stamp: String) {
        let date = AmzDate(secondsSince1970: seconds)
        #expect(date.stamp == stamp)
        #expect(date.day == String(stamp.prefix(8)))
    }
}
