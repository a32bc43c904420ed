import CloudAuth
import Foundation
import Testing

/// CurlHTTPClient against real loopback sockets: timeouts, caps, redirects, proxies, errors.
struct HTTPClientTests {
    let client = CurlHTTPClient()

    /// A server that gives every request the same answer.
    static func server(_ response: LoopbackHTTPServer.Response) async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer { _ in response }
    }

    @Test func getsStatusHeadersAndBody() async throws {
        let server = try await Self.server(.init(200, "{\"ok\":true}", headers: ["X-Answer": "42"]))
        let response = try await client.execute(HTTPRequest(url: server.url + "/path?q=1", headers: ["Metadata": "true"]))
        #expect(response.status == 200)
        #expect(response.headers["x-answer"] == "42")
        #expect(response.bodyText == "{\"ok\":true}")
        let request = try #require(server.requests.first)
        #expect(request.method == "GET")
        #expect(request.path == "/path?q=1")
        #expect(request.headers["metadata"] == "true")
        #expect(request.headers["expect"] == nil)
    }

    @Test func postsTheBody() async throws {
        let server = try await Self.server(.init(200))
        _ = try await client.execute(HTTPRequest(method: "POST", url: server.url, body: Array("a=1&b=2".utf8)))
        let request = try #require(server.requests.first)
        #expect(request.method == "POST")
        #expect(request.body == "a=1&b=2")
    }

    @Test func totalTimeoutIsEnforcedAndNamed() async throws {
        let server = try await Self.server(.init(200, stall: true))
        // The server never answers, so only the 0.5 s limit can end the transfer, and curl then
        // reports a timeout. (No wall-clock bound here: with every test running in parallel on a
        // small machine, when this task resumes says little about when curl gave up.)
        let error = await #expect(throws: CloudAuthError.self) {
            try await client.execute(HTTPRequest(url: server.url + "/slow?secret=abc", timeouts: HTTPTimeouts(connect: 1, total: 0.5)))
        }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("total 0.5s") == true)
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
        let server = try await Self.server(.init(200, big))
        let error = await #expect(throws: CloudAuthError.self) {
            try await client.execute(HTTPRequest(url: server.url, maxResponseBytes: 1000))
        }
        #expect(error?.code == .malformedResponse)
        #expect(error?.description.contains("larger than 1000 bytes") == true)
    }

    @Test func redirectToAnotherHostIsRefused() async throws {
        let server = try await Self.server(.init(302, headers: ["Location": "http://evil.example/steal"]))
        let error = await #expect(throws: CloudAuthError.self) { try await client.execute(HTTPRequest(url: server.url)) }
        #expect(error?.code == .rejected)
        #expect(error?.description.contains("another host") == true)
    }

    @Test func redirectOnTheSameOriginIsFollowed() async throws {
        let server = try await LoopbackHTTPServer { request in
            request.path == "/final" ? .init(200, "final") : .init(307, headers: ["Location": "/final"])
        }
        let response = try await client.execute(HTTPRequest(url: server.url + "/start"))
        #expect(response.bodyText == "final")
        #expect(server.requests.map(\.path) == ["/start", "/final"])

        let loop = try await Self.server(.init(307, headers: ["Location": "/again"]))
        let error = await #expect(throws: CloudAuthError.self) { try await client.execute(HTTPRequest(url: loop.url)) }
        #expect(error?.description.contains("too many redirects") == true)
        #expect(loop.requests.count == 4)
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
