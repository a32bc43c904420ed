@testable import AuthProxy
import CloudAuth
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The Vault proxy's rules for heads, paths and the token in answers.
struct VaultHeadersTests {
    private let upstream = try! VaultUpstream(address: "https://vault.internal:8200", namespace: "team")

    @Test("Hop-by-hop fields, the client's credentials and Host are dropped; the token, namespace and framing set")
    func upstreamRequest() {
        let client = HTTPRequestHead(version: .http1_0, method: .POST, uri: "/v1/secret/data/x", headers: [
            "Host": "localhost", "X-Vault-Token": "s.client", "Authorization": "Bearer s.client", "Connection": "keep-alive, X-Trace",
            "X-Trace": "1", "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "websocket", "Proxy-Authorization": "Basic x",
            "Expect": "100-continue", "Content-Length": "11", "X-Vault-Namespace": "other", "X-Vault-Request": "true",
            "Content-Type": "application/json", "Accept-Encoding": "gzip, br",
        ])
        let head = VaultHeaders.upstreamRequest(client, token: Secret("s.agent"), upstream: upstream, bodyLength: 11)
        #expect(head.version == .http1_1)
        #expect(head.headers["x-vault-token"] == ["s.agent"])
        #expect(head.headers["x-vault-namespace"] == ["team"])
        #expect(head.headers["host"] == ["vault.internal:8200"])
        #expect(head.headers["content-length"] == ["11"])
        #expect(head.headers["x-vault-request"] == ["true"])
        #expect(head.headers["content-type"] == ["application/json"])
        #expect(head.headers["accept-encoding"] == ["identity"], "an answer must come uncompressed for the token to be masked")
        for dropped in ["authorization", "connection", "x-trace", "keep-alive", "te", "upgrade", "proxy-authorization", "expect",
                        "transfer-encoding"] {
            #expect(!head.headers.contains(name: dropped), "\(dropped)")
        }
        #expect(head.uri == "/v1/secret/data/x")
        let behindPrefix = VaultHeaders.upstreamRequest(client, token: Secret("s.agent"),
                                                        upstream: try! VaultUpstream(address: "https://gateway.internal/vault/"),
                                                        bodyLength: 11)
        #expect(behindPrefix.uri == "/vault/v1/secret/data/x")
        #expect(behindPrefix.headers["host"] == ["gateway.internal"])
        #expect(behindPrefix.headers["x-vault-namespace"] == ["other"], "without a namespace of the credential's, the client's is kept")
        let streamed = VaultHeaders.upstreamRequest(client, token: Secret("s.agent"), upstream: upstream, bodyLength: nil)
        #expect(streamed.headers["transfer-encoding"] == ["chunked"])
        #expect(!streamed.headers.contains(name: "content-length"))
    }

    @Test("Framing that could be read two ways, and targets NIO would not send, are named")
    func framing() {
        func problem(_ headers: NIOHTTP1.HTTPHeaders, uri: String = "/v1/x") -> String? {
            VaultHeaders.framingProblem(HTTPRequestHead(version: .http1_1, method: .POST, uri: uri, headers: headers))
        }
        #expect(problem(["Content-Length": "5", "Transfer-Encoding": "chunked"])?.contains("both") == true)
        #expect(problem(["Content-Length": "5", "content-length": "5"])?.contains("more than one") == true)
        #expect(problem(["Content-Length": "5, 5"])?.contains("more than one") == true)
        #expect(problem(["Transfer-Encoding": "gzip, chunked"])?.contains("not supported") == true)
        #expect(problem([:], uri: "http://vault/v1/x")?.contains("must be a path") == true)
        // What NIO's client would refuse to send: answered here, not left to fail on the way to Vault.
        for byte in Array(#" "<>\^`{|}"#.utf8) + [0x7F, 0xC3] {
            let target = String(decoding: Array("/v1/a".utf8) + [byte] + Array("b".utf8), as: UTF8.self)
            #expect(problem([:], uri: target)?.contains("must be percent-encoded") == true, "\(Array(target.utf8))")
        }
        #expect(problem([:], uri: "/v1/secret/data/a%7Bb?version=1&x=[y]:@!$'()*+,;=~") == nil)
        #expect(problem(["Transfer-Encoding": "chunked"]) == nil)
        #expect(problem(["Content-Length": "5"]) == nil)
    }

    @Test("An answer in a content or transfer coding other than identity and chunked is named")
    func codings() {
        func problem(_ headers: NIOHTTP1.HTTPHeaders) -> String? {
            VaultHeaders.codingProblem(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))
        }
        #expect(problem(["Content-Encoding": "gzip"])?.contains("'gzip'") == true)
        #expect(problem(["Content-Encoding": "identity, BR"])?.contains("'br'") == true)
        #expect(problem(["Transfer-Encoding": "gzip, chunked"])?.contains("'gzip'") == true)
        #expect(problem(["Content-Encoding": "identity", "Transfer-Encoding": "chunked", "Content-Type": "application/json"]) == nil)
        #expect(problem([:]) == nil)
    }

    @Test("Over TCP only a Host naming this machine passes, and a web page's request is named")
    func loopbackTCPRequests() {
        for host in ["localhost", "LocalHost:18200", "127.0.0.1", "127.0.0.1:18200", "127.9.8.7:1", "[::1]", "[::1]:18200", "localhost:"] {
            #expect(VaultHeaders.isLoopbackHost(host), "\(host)")
        }
        for host in ["attacker.example", "127.0.0.1.attacker.example", "127.attacker.example:80", "localhost.attacker.example",
                     "localhost.", "10.0.0.1:18200", "[::2]", "[::1]x", "::1", "[::1", "127.0.0.1:80a", "0x7f000001", ""] {
            #expect(!VaultHeaders.isLoopbackHost(host), "\(host)")
        }
        func head(_ headers: NIOHTTP1.HTTPHeaders) -> HTTPRequestHead {
            HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/auth/token/lookup-self", headers: headers)
        }
        #expect(VaultHeaders.hostProblem(head(["Host": "127.0.0.1:18200"])) == nil)
        #expect(VaultHeaders.hostProblem(head(["Host": "attacker.example:18200"]))?.contains("'attacker.example:18200'") == true)
        #expect(VaultHeaders.hostProblem(head([:]))?.contains("no Host") == true)
        #expect(VaultHeaders.hostProblem(head(["Host": "localhost", "host": "attacker.example"]))?.contains("more than one") == true)
        #expect(VaultHeaders.browserProblem(head(["Host": "localhost", "X-Vault-Request": "true"])) == nil)
        #expect(VaultHeaders.browserProblem(head(["Sec-Fetch-Site": "same-origin"])) == nil)
        #expect(VaultHeaders.browserProblem(head(["Sec-Fetch-Site": "none"])) == nil)
        #expect(VaultHeaders.browserProblem(head(["origin": "null"]))?.contains("Origin") == true)
        #expect(VaultHeaders.browserProblem(head(["Sec-Fetch-Site": "Cross-Site"]))?.contains("Sec-Fetch-Site: Cross-Site") == true)
        #expect(VaultHeaders.browserProblem(head(["Sec-Fetch-Site": "same-site"])) != nil)
    }

    @Test("A request to wrap the answer is found whatever the field's case")
    func wrapping() {
        func field(_ headers: NIOHTTP1.HTTPHeaders) -> String? {
            VaultHeaders.wrappingField(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/auth/token/lookup-self", headers: headers))
        }
        #expect(field(["x-vault-wrap-ttl": "300"]) == "X-Vault-Wrap-TTL")
        #expect(field(["X-VAULT-WRAP-FORMAT": "json"]) == "X-Vault-Wrap-Format")
        #expect(field(["X-Vault-Request": "true", "X-Vault-Wrap": "1"]) == nil)
    }

    @Test("Paths are compared as Vault routes them")
    func routedPaths() {
        #expect(VaultHeaders.routedPath("/v1/sys/mounts?list=true") == "/v1/sys/mounts")
        #expect(VaultHeaders.routedPath("/v1/%73ys/mounts") == "/v1/sys/mounts")
        #expect(VaultHeaders.routedPath("//v1/sys//mounts/") == "/v1/sys/mounts/")
        #expect(VaultHeaders.routedPath("/v1/secret/../sys/./mounts") == "/v1/sys/mounts")
        #expect(VaultHeaders.routedPath("/v1/secret/%2e%2e/sys/mounts") == "/v1/sys/mounts")
        #expect(VaultHeaders.routedPath("/../../v1/sys") == "/v1/sys")
        // A combining mark after a slash does not hide the slash (Go splits on the byte).
        #expect(VaultHeaders.routedPath("/v1/sys/\u{301}/../mounts") == "/v1/sys/mounts")
        #expect(VaultHeaders.deniedPrefix(VaultHeaders.routedPath("/v1/sys/\u{301}/../mounts"), ["/v1/sys/"]) == "/v1/sys/")
        #expect(VaultHeaders.deniedPrefix("/v1/sys/\u{301}x", ["/v1/sys/"]) == "/v1/sys/")
        #expect(VaultHeaders.deniedPrefix("/v1/sys/mounts", ["/v1/sys/"]) == "/v1/sys/")
        #expect(VaultHeaders.deniedPrefix("/v1/sys", ["/v1/sys/"]) == "/v1/sys/")
        #expect(VaultHeaders.deniedPrefix("/v1/system", ["/v1/sys/"]) == nil)
        #expect(VaultHeaders.deniedPrefix("/v1/secret/data/x", ["/v1/sys/"]) == nil)
        // revoke-self, refused always, in any namespace and however spelled.
        for uri in ["/v1/auth/token/revoke-self", "/v1/auth/token/revoke-self/", "/v1/ns1/auth/token/revoke-self",
                    "/v1/ns1/child/auth/token/%72evoke-self?x=1", "//v1/x/../auth//token/revoke-self"] {
            #expect(VaultHeaders.revokesOwnToken(VaultHeaders.routedPath(uri)), "\(uri)")
        }
        for uri in ["/v1/auth/token/revoke-self-x", "/v1/auth/token/revoke", "/v1/auth/token/Revoke-Self", "/v1/xauth/token/revoke-self",
                    "/v2/auth/token/revoke-self", "/v1/auth/token/revoke-self/x"] {
            #expect(!VaultHeaders.revokesOwnToken(VaultHeaders.routedPath(uri)), "\(uri)")
        }
    }

    @Test("The token is masked wherever it falls in a stream cut at every position; other bytes pass unchanged")
    func redaction() {
        let token = "hvs.CAESIabcdefghijklmnop"
        let body = #"{"data":{"id":"\#(token)","x":"hvs.CAE","y":"\#(token)\#(token)"},"end":"hvs.CAESIabcdefghijklmno"}"#
        let expected = body.replacingOccurrences(of: token, with: String(repeating: "*", count: token.count))
        let bytes = Array(body.utf8)
        for cut in 0...bytes.count {
            for second in [cut, min(bytes.count, cut + 3)] {
                var redactor = TokenRedactor(masking: [Secret(token)])
                var out: [UInt8] = []
                for piece in [bytes[..<cut], bytes[cut..<second], bytes[second...]] {
                    let safe = redactor.redact(ByteBuffer(bytes: Array(piece)))
                    out += safe.readableBytesView
                }
                out += redactor.finish().readableBytesView
                #expect(String(decoding: out, as: UTF8.self) == expected, "cut at \(cut), \(second)")
            }
        }
    }

    @Test("Several tokens of different lengths are all masked wherever a stream is cut")
    func redactionOfSeveral() {
        let current = "hvs.CAESIcurrentcurrentcurrent", previous = "s.previousToken", other = "s.prev"
        let body = #"{"a":"\#(previous)","b":"\#(current)\#(previous)","c":"\#(other)","d":"hvs.CAESIcurrent","e":"s.previousToke"}"#
        let expected = body.replacingOccurrences(of: current, with: String(repeating: "*", count: current.count))
            .replacingOccurrences(of: previous, with: String(repeating: "*", count: previous.count))
        let bytes = Array(body.utf8)
        for cut in 0...bytes.count {
            var redactor = TokenRedactor(masking: [Secret(previous), Secret(current)])
            var out = Array(redactor.redact(ByteBuffer(bytes: Array(bytes[..<cut]))).readableBytesView)
            out += redactor.redact(ByteBuffer(bytes: Array(bytes[cut...]))).readableBytesView
            out += redactor.finish().readableBytesView
            #expect(String(decoding: out, as: UTF8.self) == expected, "cut at \(cut)")
        }
    }

    @Test("The proxy masks the tokens it sent: the current one and the eight before it, and the one a request went with")
    func sentTokens() {
        let sent = SentTokens()
        let tokens = (0..<12).map { Secret("s.token-\($0)-abcdef") }
        for token in tokens {
            #expect(sent.record(token) == token)
            #expect(sent.record(token) == token, "noting the current token again changes nothing")
        }
        func masked(_ token: Secret, by redactor: TokenRedactor) -> Bool {
            var redactor = redactor
            var out = Array(redactor.redact(ByteBuffer(string: "[\(token.reveal())]")).readableBytesView)
            out += redactor.finish().readableBytesView
            return String(decoding: out, as: UTF8.self) == "[" + String(repeating: "*", count: token.reveal().count) + "]"
        }
        let redactor = sent.redactor(for: tokens[11])
        #expect(tokens[3...].allSatisfy { masked($0, by: redactor) })
        #expect(!tokens[..<3].contains { masked($0, by: redactor) }, "older ones are let go")
        let old = sent.redactor(for: tokens[0])
        #expect(masked(tokens[0], by: old) && masked(tokens[11], by: old), "the request's own token, however old, and the current")
    }
}
