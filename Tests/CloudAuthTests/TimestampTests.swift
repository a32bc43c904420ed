import CloudAuth
import Foundation
import Testing

@Suite struct TimestampTests {
    @Test("RFC 3339 times with and without fractions and offsets", arguments: [
        ("2026-11-22T05:00:00Z", 1_795_323_600.0),
        ("2026-11-22T05:00:00.123Z", 1_795_323_600.123),
        ("2026-11-22T05:00:00.770164Z", 1_795_323_600.770),
        ("2026-11-22T06:00:00+01:00", 1_795_323_600.0),
        ("2026-11-22t05:00:00z", 1_795_323_600.0),
        ("2026-11-22T05:00:00.5Z", 1_795_323_600.5),
        ("2026-11-22T06:30:00+01:30", 1_795_323_600.0),
        ("2026-11-22T03:00:00-02:00", 1_795_323_600.0),
    ])
    func parses(_ text: String, _ seconds: Double) throws {
        let date = try #require(Timestamp.parse(text))
        #expect(abs(date.timeIntervalSince1970 - seconds) < 0.001)
    }

    @Test("not RFC 3339 times", arguments: [
        "tomorrow", "2026-11-22", "", "2026-11-22T05:00:00", "2026-13-01T00:00:00Z", "2026-11-22T24:00:00Z",
        "2026-11-22T05:00:00.Z", "2026-11-22T05:00:00Z trailing", "2026-11-22T05:00:00+0100",
    ])
    func refuses(_ text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    @Test func whatIsWrittenReadsBack() throws {
        let date = Date(timeIntervalSince1970: 1_795_323_600)
        #expect(Timestamp.parse(Timestamp.format(date)) == date)
        #expect(Timestamp.formatMilliseconds(Date(timeIntervalSince1970: 1_795_323_600.042)) == "2026-11-22T05:00:00.042Z")
    }
}

@Suite struct HostAddressTests {
    @Test("this machine", arguments: ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "/run/postgresql"])
    func loopback(_ host: String) {
        #expect(HostAddress.isLoopback(host))
    }

    @Test("other machines", arguments: ["db.example.com", "10.0.0.1", "128.0.0.1", "::2", "localhost.example.com", ""])
    func notLoopback(_ host: String) {
        #expect(!HostAddress.isLoopback(host))
    }
}

/// The HTTP `Date` header format, read and written.
struct HTTPDateTests {
    @Test func imfFixdateRoundTripsAndOtherFormsAreRefused() {
        let date = Date(timeIntervalSince1970: 784_111_777)
        #expect(HTTPDate.format(date) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == date)
        #expect(HTTPDate.parse(HTTPDate.format(Date(timeIntervalSince1970: 1_796_553_600))) == Date(timeIntervalSince1970: 1_796_553_600))
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == nil)
        #expect(HTTPDate.parse("Sun, 06 Foo 1994 08:49:37 GMT") == nil)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 25:49:37 GMT") == nil)
    }
}
