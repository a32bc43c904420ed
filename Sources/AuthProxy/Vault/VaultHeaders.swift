import CloudAuth
import Foundation
import NIOHTTP1

/// How the Vault proxy rewrites the heads it relays: hop-by-hop fields (RFC 9110 section 7.6.1)
/// stay on their own hop, the client's credentials never reach Vault, and the agent's token is
/// added. Pure functions of the heads, so the rules are testable without a connection.
enum VaultHeaders {
    /// The fields that describe one connection, not the message.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade",
    ]

    /// The client's own credentials and the fields the proxy sets itself.
    static let replacedInRequests: Set<String> = [
        "x-vault-token", "authorization", "host", "content-length", "expect", "x-vault-namespace", "accept-encoding",
    ]

    /// Fields that ask Vault to wrap its answer: the wrapping token it returns instead unwraps,
    /// anywhere and past the proxy's masking, to what the answer holds, which may be the proxy's
    /// token (`auth/token/lookup-self`).
    static let wrapping = ["X-Vault-Wrap-TTL", "X-Vault-Wrap-Format"]

    /// Why `head` cannot be relayed safely, or nil: both `Transfer-Encoding` and
    /// `Content-Length`, several `Content-Length` values (two ways to read where the body ends,
    /// the ground of request smuggling), a transfer coding other than `chunked`, or a target that
    /// is not a path or has a character HTTP requires percent-encoded (`{`, `|`, a space...).
    static func framingProblem(_ head: HTTPRequestHead) -> String? {
        let lengths = head.headers["content-length"].flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let codings = head.headers["transfer-encoding"]
        if !codings.isEmpty, !lengths.isEmpty {
            return "a request with both Transfer-Encoding and Content-Length is refused (it could be read two ways)"
        }
        if lengths.count > 1 { return "a request with more than one Content-Length is refused (it could be read two ways)" }
        if !codings.isEmpty, codings.map({ $0.lowercased().trimmingCharacters(in: .whitespaces) }) != ["chunked"] {
            return "Transfer-Encoding '\(codings.joined(separator: ", "))' is not supported; send chunked or a Content-Length"
        }
        guard head.uri.hasPrefix("/") else {
            return "the request target must be a path like /v1/secret/data/app (absolute URLs and CONNECT are not proxied)"
        }
        guard head.uri.utf8.allSatisfy(isTargetByte) else {
            return "the request target has a character that must be percent-encoded (a space, a control or non-ASCII "
                + #"character, or one of " < > \ ^ ` { | })"#
        }
        return nil
    }

    /// Whether `byte` may stand in a request target as it is (RFC 3986's unreserved, gen-delims,
    /// sub-delims and `%`): the set NIO's HTTP client checks before it sends a head. The parser
    /// that reads the client's request lets more through (`{`, `|`, `"`...).
    private static func isTargetByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
             UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "["), UInt8(ascii: "]"),
             UInt8(ascii: "@"), UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
             UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
             UInt8(ascii: "%"):
            true
        default:
            false
        }
    }

    /// The first of the ``wrapping`` fields `head` carries (in any case), or nil.
    static func wrappingField(_ head: HTTPRequestHead) -> String? {
        wrapping.first { head.headers.contains(name: $0) }
    }

    /// Why a request that came over loopback TCP is not addressed to this machine, or nil: its
    /// `Host` must be `localhost` or a loopback address (any port). A web page can send requests
    /// to a loopback port under a DNS name of its own that it rebinds to 127.0.0.1; its `Host` is
    /// then that name.
    static func hostProblem(_ head: HTTPRequestHead) -> String? {
        let hosts = head.headers["host"]
        guard hosts.count == 1, let host = hosts.first else {
            return hosts.isEmpty ? "the request has no Host header" : "the request has more than one Host header"
        }
        guard isLoopbackHost(host) else {
            return "the request is addressed to '\(host.prefix(100))', not to localhost or a loopback address: over TCP the "
                + "proxy serves only VAULT_ADDR=http://127.0.0.1:PORT (or localhost), since a web page can reach a loopback port "
                + "under a DNS name of its own"
        }
        return nil
    }

    /// Why a request that came over loopback TCP looks like a web page's, or nil: it has an
    /// `Origin` (browsers send it on requests a page makes to another origin, and on writes), or
    /// `Sec-Fetch-Site` says another site made it. The proxy's clients are programs, not pages.
    static func browserProblem(_ head: HTTPRequestHead) -> String? {
        if head.headers.contains(name: "origin") {
            return "a request with an Origin header is refused: it comes from a web page, and the proxy's clients are programs"
        }
        if let site = head.headers["sec-fetch-site"].first(where: { ["cross-site", "same-site"].contains($0.lowercased()) }) {
            return "a request a web page of another site made (Sec-Fetch-Site: \(site)) is refused"
        }
        return nil
    }

    /// Whether a `Host` value names this machine: `localhost` or a literal loopback address
    /// (`127.0.0.0/8`, `[::1]`), with or without a port. Names are not resolved, and nothing else
    /// passes: `127.0.0.1.example.com` is a name.
    static func isLoopbackHost(_ value: String) -> Bool {
        var host = Substring(value)
        var port = Substring()
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            port = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            guard port.isEmpty || port.hasPrefix(":") else { return false }
            port = port.dropFirst()
        } else if let colon = host.firstIndex(of: ":") {
            port = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard port.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return false }
        if host.lowercased() == "localhost" { return true }
        var address = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, String(host), &address) == 1 { return address[0] == 127 }
        if inet_pton(AF_INET6, String(host), &address) == 1 { return address == [UInt8](repeating: 0, count: 15) + [1] }
        return false
    }

    /// Whether the client asked for `Expect: 100-continue`.
    static func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        head.headers["expect"].contains { $0.lowercased() == "100-continue" }
    }

    /// The request Vault receives: the client's head without hop-by-hop fields and credentials,
    /// HTTP/1.1, the target after the address's path, `Host` naming Vault, `X-Vault-Token` the agent's token and `X-Vault-Namespace`
    /// the credential's namespace (when it has one; else the client's), and `Accept-Encoding:
    /// identity` whatever the client accepts (the token must be found in the answer to be
    /// masked). `bodyLength` is the body's size when known (buffered or the client's
    /// `Content-Length`), nil to send it chunked.
    static func upstreamRequest(_ head: HTTPRequestHead, token: Secret, upstream: VaultUpstream, bodyLength: Int?) -> HTTPRequestHead {
        var headers = NIOHTTP1.HTTPHeaders()
        let connectionNamed = connectionOptions(head.headers)
        for (name, value) in head.headers {
            let lowered = name.lowercased()
            if hopByHop.contains(lowered) || connectionNamed.contains(lowered) || replacedInRequests.contains(lowered) { continue }
            headers.add(name: name, value: value)
        }
        headers.add(name: "Host", value: upstream.hostHeader)
        headers.add(name: "Accept-Encoding", value: "identity")
        headers.add(name: "X-Vault-Token", value: token.reveal())
        if let namespace = upstream.namespace ?? head.headers["x-vault-namespace"].first {
            headers.add(name: "X-Vault-Namespace", value: namespace)
        }
        switch bodyLength {
        case let length? where length > 0 || head.method.sendsBody: headers.add(name: "Content-Length", value: String(length))
        case .some: break
        case nil: headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: upstream.pathPrefix + head.uri, headers: headers)
    }

    /// Why Vault's answer cannot be relayed, or nil: a content or transfer coding other than
    /// identity (and chunked), in which the token could not be found to be masked. The proxy asks
    /// for `Accept-Encoding: identity`, so only a server that ignores it sends one.
    static func codingProblem(_ head: HTTPResponseHead) -> String? {
        let codings = (head.headers["content-encoding"] + head.headers["transfer-encoding"])
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard let coding = codings.first(where: { !$0.isEmpty && $0 != "identity" && $0 != "chunked" }) else { return nil }
        return "answered in the coding '\(coding.prefix(40))', in which the proxy cannot mask its token (it asks for "
            + "Accept-Encoding: identity: does a server between the proxy and Vault compress answers?)"
    }

    /// The response the client receives: Vault's head without hop-by-hop fields, in the client's
    /// HTTP version, `Connection: close` when the proxy closes after it (the encoder frames the
    /// body again).
    static func clientResponse(_ head: HTTPResponseHead, version: HTTPVersion, closing: Bool) -> HTTPResponseHead {
        var headers = NIOHTTP1.HTTPHeaders()
        let connectionNamed = connectionOptions(head.headers)
        for (name, value) in head.headers {
            let lowered = name.lowercased()
            if hopByHop.contains(lowered) || connectionNamed.contains(lowered) { continue }
            headers.add(name: name, value: value)
        }
        if closing { headers.add(name: "Connection", value: "close") }
        return HTTPResponseHead(version: version, status: head.status, headers: headers)
    }

    /// An answer of the proxy's own, in Vault's error shape.
    static func errorResponse(_ error: VaultProxyError, version: HTTPVersion, bodyLength: Int, closing: Bool) -> HTTPResponseHead {
        var headers: NIOHTTP1.HTTPHeaders = ["Content-Type": "application/json", "Cache-Control": "no-store", "Content-Length": String(bodyLength)]
        if closing { headers.add(name: "Connection", value: "close") }
        return HTTPResponseHead(version: version, status: error.status, headers: headers)
    }

    /// The field names a `Connection` header lists (lower-cased): hop-by-hop for this message.
    private static func connectionOptions(_ headers: NIOHTTP1.HTTPHeaders) -> Set<String> {
        Set(headers["connection"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
    }

    /// The path of a request target as Vault routes it: percent-decoded, with `.` and `..`
    /// segments resolved and doubled slashes collapsed (what Go's server does before Vault sees
    /// it), so that a deny prefix cannot be dodged by spelling the path differently. The query is
    /// left out; a trailing slash is kept. It works on bytes, as Go does: as characters, a `/`
    /// followed by a combining mark would not be a separator, and `/v1/sys/\u{301}/../mounts`
    /// would pass a deny of `/v1/sys/` while Vault routes it to `/v1/sys/mounts`.
    static func routedPath(_ uri: String) -> String {
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        func isDot(_ segment: ArraySlice<UInt8>) -> Bool { segment.count == 1 && segment.first == dot }
        func isDotDot(_ segment: ArraySlice<UInt8>) -> Bool { segment.count == 2 && segment.allSatisfy { $0 == dot } }
        let rawPath = uri.utf8.split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        let decoded = percentDecoded(Array(rawPath))
        var segments: [ArraySlice<UInt8>] = []
        for segment in decoded.split(separator: slash, omittingEmptySubsequences: true) {
            if isDot(segment) { continue }
            if isDotDot(segment) {
                _ = segments.popLast()
                continue
            }
            segments.append(segment)
        }
        let last = decoded.split(separator: slash, omittingEmptySubsequences: false).last
        let trailingSlash = decoded.last == slash || last.map { isDot($0) || isDotDot($0) } == true
        var joined: [UInt8] = [slash]
        for (index, segment) in segments.enumerated() {
            if index > 0 { joined.append(slash) }
            joined += segment
        }
        if trailingSlash, !segments.isEmpty { joined.append(slash) }
        return String(decoding: joined, as: UTF8.self)
    }

    /// The first of `prefixes` that `path` (a ``routedPath(_:)``) falls under: it starts with the
    /// prefix, or equals a prefix ending in `/` without that slash. Compared as bytes, like the
    /// path.
    static func deniedPrefix(_ path: String, _ prefixes: [String]) -> String? {
        prefixes.first { prefix in
            path.utf8.starts(with: prefix.utf8)
                || (prefix.hasSuffix("/") && path.utf8.elementsEqual(prefix.utf8.dropLast()))
        }
    }

    /// Whether `path` (a ``routedPath(_:)``) is `auth/token/revoke-self`, in the root namespace or
    /// any other (Vault reads leading segments that name a namespace as one:
    /// `/v1/ns1/auth/token/revoke-self`). It revokes the token the proxy sends, which every client
    /// of the agent shares.
    static func revokesOwnToken(_ path: String) -> Bool {
        let endpoint = "/auth/token/revoke-self".utf8
        var bytes = path.utf8[...]
        if bytes.last == UInt8(ascii: "/") { bytes = bytes.dropLast() }
        return bytes.starts(with: "/v1/".utf8) && bytes.suffix(endpoint.count).elementsEqual(endpoint)
    }

    private static func percentDecoded(_ text: [UInt8]) -> [UInt8] {
        guard text.contains(UInt8(ascii: "%")) else { return text }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count)
        var iterator = text[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
               let high = hexValue(iterator[iterator.startIndex]), let low = hexValue(iterator[iterator.startIndex + 1]) {
                bytes.append(high << 4 | low)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return bytes
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension HTTPMethod {
    /// Methods whose requests carry a body (so a length of 0 is still sent).
    var sendsBody: Bool { self == .POST || self == .PUT || self == .PATCH }

    /// Reads, which can be sent twice without changing anything (not Vault's `PUT`, which creates
    /// like `POST`). Vault's `LIST` never comes: NIO's parser refuses the method, and clients list
    /// with `GET` and `?list=true`.
    var isSafe: Bool { self == .GET || self == .HEAD || self == .OPTIONS }
}
