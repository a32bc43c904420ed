import CloudAuth
import Foundation
import Testing

/// CurlHTTPClient against real loopback sockets: timeouts, caps, redirects, proxies, errors.
struct HTTPClientTests {
    let client = CurlHTTPClient()

    static func response(status: String = "200 OK", headers: [String] = [], body: String) -> String {
        (["HTTP/1.1 \(status)", "Content-Length: \(body.utf8.count)", "Connection: close"] + headers)
            .joined(separator: "\r\n") + "\r\n\r\n" + body
    }

    @Test func getsStatusHeadersAndBody() async throws {
        let server = try ScriptedHTTPServer(.respond(Self.response(headers: ["X-Answer: 42"], body: "{\"ok\":true}")))
        let response = try await client.execute(HTTPRequest(url: server.url + "/path?q=1", headers: ["Metadata": "true"]))
        #expect(response.status == 200)
        #expect(response.headers["x-answer"] == "42")
        #expect(response.bodyText == "{\"ok\":true}")
        let head = try #require(server.requests.first)
        #expect(head.hasPrefix("GET /path?q=1 HTTP/1.1"))
        #expect(head.contains("Metadata: true"))
        #expect(!head.contains("Expect:"))
    }

    @Test func postsTheBody() async throws {
        let server = try ScriptedHTTPServer(.respond(Self.response(body: "")))
        _ = try await client.execute(HTTPRequest(method: "POST", url: server.url, body: Array("a=1&b=2".utf8)))
        let head = try #require(server.requests.first)
        #expect(head.hasPrefix("POST / HTTP/1.1"))
        #expect(head.contains("Content-Length: 7"))
    }

    @Test func totalTimeoutIsEnforcedAndNamed() async throws {
        let server = try ScriptedHTTPServer(.stall)
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: CloudAuthError.self) {
            try await client.execute(HTTPRequest(url: server.url + "/slow?secret=abc", timeouts: HTTPTimeouts(connect: 1, total: 0.5)))
        }
        #expect(clock.now - start < .seconds(5), "the 0.5 s limit must cut the transfer short")
        #expect(error?.code == .timeout)
        #expect(error?.source.contains("/slow") == true)
        #expect(error?.description.contains("secret=abc") == false)
    }

    @Test func refusedConnectionIsUnavailable() async throws {
        let error = await #expect(throws: CloudAuthError.self) {
            try await client.execute(HTTPRequest(url: "http://127.0.0.1:9/token"))
        }
        #expect(error?.code == .unavailable)
        #expect(error?.description.contains("http://127.0.0.1:9/token") == true)
    }

    @Test func responseSizeIsCapped() async throws {
        let big = String(repeating: "x", count: 10_000)
        let server = try ScriptedHTTPServer(.respond(Self.response(body: big)))
        let error = await #expect(throws: CloudAuthError.self) {
            try await client.execute(HTTPRequest(url: server.url, maxResponseBytes: 1000))
        }
        #expect(error?.code == .malformedResponse)
        #expect(error?.description.contains("larger than 1000 bytes") == true)
    }

    @Test func redirectToAnotherHostIsRefused() async throws {
        let server = try ScriptedHTTPServer(.respond(Self.response(status: "302 Found", headers: ["Location: http://evil.example/steal"], body: "")))
        let error = await #expect(throws: CloudAuthError.self) { try await client.execute(HTTPRequest(url: server.url)) }
        #expect(error?.code == .rejected)
        #expect(error?.description.contains("another host") == true)
    }

    @Test func redirectOnTheSameOriginIsFollowed() async throws {
        let target = try ScriptedHTTPServer(.respond(Self.response(body: "final")))
        // Same host and port as the first hop: a server that redirects to its own /final path.
        let hop = try ScriptedHTTPServer(.respond(Self.response(status: "307 Temporary Redirect", headers: ["Location: /final"], body: "")))
        let error = await #expect(throws: CloudAuthError.self) { try await client.execute(HTTPRequest(url: hop.url)) }
        // The scripted server redirects every request, so the client must give up after a few hops.
        #expect(error?.description.contains("too many redirects") == true)
        #expect(hop.requests.count == 4)
        #expect(hop.requests.dropFirst().allSatisfy { $0.hasPrefix("GET /final ") })
        let response = try await client.execute(HTTPRequest(url: target.url))
        #expect(response.bodyText == "final")
    }

    @Test func metadataHostsBypassTheProxy() throws {
        #expect(try EndpointURL(parsing: "http://169.254.169.254/latest").isMetadataOrLocalHost)
        #expect(try EndpointURL(parsing: "http://[fd00:ec2::254]/latest").isMetadataOrLocalHost)
        #expect(try EndpointURL(parsing: "http://metadata.google.internal/computeMetadata").isMetadataOrLocalHost)
        #expect(try EndpointURL(parsing: "http://127.0.0.1:8080/").isMetadataOrLocalHost)
        #expect(try !EndpointURL(parsing: "https://sts.us-east-1.amazonaws.com/").isMetadataOrLocalHost)
    }

    @Test func urlParsingAndRedaction() throws {
        let url = try EndpointURL(parsing: "https://DB.example.com:443/a/b?X-Amz-Signature=abc")
        #expect(url.host == "db.example.com")
        #expect(url.hostHeader == "db.example.com")
        #expect(url.redacted == "https://db.example.com/a/b")
        #expect(try EndpointURL(parsing: "http://h:8080").hostHeader == "h:8080")
        #expect(throws: CloudAuthError.self) { try EndpointURL(parsing: "ftp://h/") }
        #expect(throws: CloudAuthError.self) { try EndpointURL(parsing: "http://h:70000/") }
        #expect(throws: CloudAuthError.self) { try EndpointURL(parsing: "no-scheme") }
    }
}
