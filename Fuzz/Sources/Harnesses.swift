@testable import AuthProxy
import CloudAuth
@testable import Connectivity
@testable import CredentialAgent
import Dispatch
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// One fuzzing harness: hands bytes of outside input to one parser of credagent. Bad input is
/// expected and may be refused with an error; a crash, a trap or a hang is a defect.
struct Harness: Sendable {
    var name: String
    var run: @Sendable ([UInt8]) -> Void
}

/// Every harness, by the name of its corpus directory under `Fuzz/corpus/`.
enum Harnesses {
    static let all: [Harness] = [
        Harness(name: "agent-request", run: agentRequest),
        Harness(name: "agent-request-head", run: agentRequestHead),
        Harness(name: "config", run: config),
        Harness(name: "aws-responses", run: awsResponses),
        Harness(name: "azure-responses", run: azureResponses),
        Harness(name: "gcp-responses", run: gcpResponses),
        Harness(name: "vault-responses", run: vaultResponses),
        Harness(name: "jwt", run: jwt),
        Harness(name: "sigv4-verifier", run: sigV4Verifier),
        Harness(name: "resp", run: resp),
        Harness(name: "postgres", run: postgres),
        Harness(name: "resp-relay", run: respRelay),
        Harness(name: "vault-proxy", run: vaultProxy),
    ]

    static func named(_ name: String) -> Harness? { all.first { $0.name == name } }

    // MARK: The agent's socket API

    /// A request line, `METHOD URI`, as the server hands it to the router.
    static func agentRequest(_ bytes: [UInt8]) {
        let line = String(decoding: bytes, as: UTF8.self)
        let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
        _ = Route.parse(method: String(parts[0]), uri: parts.count > 1 ? String(parts[1]) : "/")
    }

    /// A request head as the socket reads it. Whatever the agent's own reader of the usual shape
    /// (`PlainRequestHead`) accepts, NIO's HTTP/1.1 decoder must read from the same bytes as the
    /// same request and nothing more; what it waits for more of, NIO's decoder must not find
    /// complete or wrong either. (What it calls unusual goes to NIO's decoder anyway.)
    static func agentRequestHead(_ bytes: [UInt8]) {
        let limits = ServerLimits()
        let outcome = bytes.withUnsafeBytes {
            PlainRequestHead.parse($0, maxFields: limits.maxHeaderFields, maxLength: SocketRequestReader.maxPlainHeadBytes)
        }
        switch outcome {
        case .unusual:
            return
        case .incomplete:
            let parts = nioDecoded(bytes, limits: limits)
            precondition(parts.error == nil && parts.parts.isEmpty,
                         "the plain reader waits for more, NIO's decoder read \(parts)")
        case let .request(head, length):
            let parts = nioDecoded(Array(bytes[..<length]), limits: limits)
            precondition(parts.error == nil, "the plain reader read \(head), NIO's decoder failed: \(parts)")
            guard parts.parts.count == 2, case let .head(nio) = parts.parts[0], case .end(nil) = parts.parts[1] else {
                preconditionFailure("the plain reader read \(head), NIO's decoder \(parts.parts)")
            }
            precondition(nio.method == head.method && nio.uri == head.uri && nio.version == head.version
                         && nio.isKeepAlive == head.isKeepAlive
                         && Array(nio.headers).elementsEqual(Array(head.headers), by: { $0 == $1 }),
                         "the plain reader read \(head), NIO's decoder \(nio)")
        }
    }

    /// What NIO's request decoder, configured as the socket's, makes of `bytes`.
    private static func nioDecoded(_ bytes: [UInt8], limits: ServerLimits) -> (parts: [HTTPServerRequestPart], error: (any Error)?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(
            leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: limits.decoderLimits)))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        var error: (any Error)?
        do { try channel.writeInbound(ByteBuffer(bytes: bytes)) } catch let failure { error = failure }
        var parts: [HTTPServerRequestPart] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) { parts.append(part) }
        return (parts, error)
    }

    // MARK: Configuration

    /// The config file, YAML with `${NAME}` references.
    static func config(_ bytes: [UInt8]) {
        _ = try? ConfigParser.parse(yaml: String(decoding: bytes, as: UTF8.self), file: "agent.yaml",
                                    environment: ["REGION": "eu-west-1", "EMPTY": "", "HOST": "db.example"])
    }

    // MARK: Cloud responses

    /// The first byte picks the answer's status and the scenario; the rest is every response body.
    private static func split(_ bytes: [UInt8]) -> (selector: UInt8, client: ReplayingHTTPClient) {
        let selector = bytes.first ?? 0
        let statuses = [200, 200, 200, 400, 401, 403, 404, 500]
        let client = ReplayingHTTPClient(status: statuses[Int(selector) % statuses.count], body: Array(bytes.dropFirst()))
        return (selector, client)
    }

    /// IMDSv2 (token, role list, keys), the container credentials endpoint, and STS AssumeRole's XML.
    static func awsResponses(_ bytes: [UInt8]) {
        let (selector, client) = split(bytes)
        var settings = AWSSettings()
        settings.region = "us-east-1"
        var environment: [String: String] = [:]
        switch (selector / 8) % 3 {
        case 0: break
        case 1: environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:8080/credentials"
        default:
            environment["AWS_ACCESS_KEY_ID"] = "AKIDEXAMPLE"
            environment["AWS_SECRET_ACCESS_KEY"] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
            settings.assumeRoleARN = "arn:aws:iam::123456789012:role/kong"
            settings.stsEndpoint = "http://127.0.0.1:8080"
        }
        let chain = AWSCredentialChain(settings: settings, http: client, environment: environment)
        blocking { _ = try? await chain.credentials() }
    }

    /// Azure IMDS and App Service token answers, and Entra ID's error bodies.
    static func azureResponses(_ bytes: [UInt8]) {
        let (selector, client) = split(bytes)
        var environment: [String: String] = [:]
        if (selector / 8) % 2 == 1 {
            environment["IDENTITY_ENDPOINT"] = "http://127.0.0.1:8081/msi/token"
            environment["IDENTITY_HEADER"] = "header"
        }
        let identity = AzureIdentity(settings: AzureSettings(), http: client, environment: environment,
                                     retry: AzureRetryPolicy(maxAttempts: 1))
        blocking { _ = try? await identity.token(resource: "https://ossrdbms-aad.database.windows.net") }
    }

    /// The metadata server's access and identity tokens and email, and service-account key files.
    static func gcpResponses(_ bytes: [UInt8]) {
        let (selector, client) = split(bytes)
        let identity = GCPIdentity(settings: GCPSettings(metadataHost: "127.0.0.1:8082"), http: client, environment: [:])
        switch (selector / 8) % 4 {
        case 0: blocking { _ = try? await identity.accessToken() }
        case 1: blocking { _ = try? await identity.identityToken(audience: "https://vault.example") }
        case 2: blocking { _ = try? await identity.email() }
        default: _ = try? ServiceAccountKey(json: Array(bytes.dropFirst()), source: "fuzz")
        }
    }

    /// Vault's login, renew and lookup answers and its error bodies.
    static func vaultResponses(_ bytes: [UInt8]) {
        let (selector, client) = split(bytes)
        let vault = VaultClient(endpoint: VaultEndpoint(address: "http://127.0.0.1:8200"), http: client)
        switch (selector / 8) % 3 {
        case 0: blocking { _ = try? await vault.login(mount: "jwt", payload: ["role": "kong", "jwt": "x.y.z"]) }
        case 1: blocking { _ = try? await vault.renewSelf(Secret("s.token")) }
        default: blocking { _ = try? await vault.lookupSelf(Secret("s.token")) }
        }
    }

    // MARK: Tokens and signatures

    static func jwt(_ bytes: [UInt8]) {
        _ = try? JWT.decode(String(decoding: bytes, as: UTF8.self), source: "fuzz")
    }

    /// A presigned token (RDS, ElastiCache) or, after a newline, a header-signed request:
    /// `METHOD PATH?QUERY` then header lines, an empty line and the body.
    static func sigV4Verifier(_ bytes: [UInt8]) {
        let verifier = SigV4Verifier { _ in
            SigV4Verifier.IssuedKey(secretAccessKey: Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"))
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let now = Date(timeIntervalSince1970: 1_767_225_600)
        guard text.contains("\n") else {
            _ = verifier.verifyToken(text, now: now)
            return
        }
        let sections = text.components(separatedBy: "\n\n")
        var lines = sections[0].split(separator: "\n", omittingEmptySubsequences: false)
        let requestLine = lines.removeFirst().split(separator: " ", maxSplits: 1)
        let target = requestLine.count > 1 ? requestLine[1].split(separator: "?", maxSplits: 1) : ["/"]
        var headers = HTTPHeaders()
        for line in lines {
            let field = line.split(separator: ":", maxSplits: 1)
            guard let name = field.first else { continue }
            headers.add(String(name), field.count > 1 ? String(field[1]) : "")
        }
        _ = verifier.verify(method: requestLine.first.map(String.init) ?? "GET", path: String(target.first ?? "/"),
                            query: target.count > 1 ? String(target[1]) : nil, headers: headers,
                            body: Array(sections.dropFirst().joined(separator: "\n\n").utf8), now: now)
    }

    // MARK: Redis

    /// A server's replies, fed in two pieces to the incremental reader.
    static func resp(_ bytes: [UInt8]) {
        let reader = RedisReplyReader()
        let middle = bytes.count / 2
        for piece in [bytes[..<middle], bytes[middle...]] {
            let fed: Bool = piece.withUnsafeBytes { (try? reader.feed($0)) != nil }
            guard fed else { return }
            while let reply = try? reader.next() { _ = reply }
        }
    }

    // MARK: PostgreSQL

    /// What the Postgres proxy reads: after a first byte with its low bit clear, a client's
    /// opening packets (SSLRequest, GSSENCRequest, StartupMessage, CancelRequest); with it set, a
    /// server's answers to the proxy's own handshake (cleartext, MD5 and SCRAM-SHA-256 requests,
    /// errors, parameter statuses, the cancel key).
    static func postgres(_ bytes: [UInt8]) {
        var buffer = ByteBuffer(bytes: bytes.dropFirst())
        if (bytes.first ?? 0) & 1 == 0 {
            var client = ClientStartupStateMachine()
            var action = client.next(&buffer)
            while case .answer = action { action = client.next(&buffer) }
            if case let .startup(message) = action {
                _ = ClientStartupStateMachine.upstreamStartup(message, credentialUser: "kong", credentialName: "orders-db")
            }
        } else {
            var upstream = UpstreamAuthStateMachine(user: "kong", password: Secret("token"), nonce: "fuzznonce")
            while let message = try? PostgresWire.decodeBackendMessage(&buffer) {
                switch upstream.received(message) {
                case .fail, .ready: return
                default: continue
                }
            }
        }
    }

    // MARK: Redis proxy

    /// The Redis proxy's boundary scanners: the bytes (after the first, which picks where they are
    /// split in two) read both as a client's commands and as a server's replies. A client's bytes
    /// without a protocol error must give the same commands and the same forwarded bytes whether
    /// they arrive whole or in two reads.
    static func respRelay(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let input = Array(bytes.dropFirst())
        let middle = input.isEmpty ? 0 : Int(first) % (input.count + 1)
        let whole = scanRequests([input[...]])
        let split = scanRequests([input[..<middle], input[middle...]])
        if !whole.failed, !split.failed {
            precondition(whole.events == split.events && whole.forwarded == split.forwarded,
                         "the commands found depend on where the client's bytes were split")
        }
        var replies = RESPReplyScanner()
        for piece in [input[..<middle], input[middle...]] {
            var index = piece.startIndex
            while index < piece.endIndex {
                guard let progress = try? piece[index...].withUnsafeBytes({ try replies.consume($0) }) else { return }
                index += progress.count
            }
        }
    }

    /// What the request scanner finds in `pieces`, read one after another as the proxy reads them.
    private static func scanRequests(_ pieces: [ArraySlice<UInt8>]) -> (events: [RESPRequestEvent], forwarded: [UInt8], failed: Bool) {
        var requests = RESPRequestScanner(interceptedNames: ["AUTH", "HELLO"])
        var events: [RESPRequestEvent] = []
        var forwarded: [UInt8] = []
        for piece in pieces {
            var buffer = ByteBuffer(bytes: piece)
            requests.append(&buffer)
            while let event = requests.next() {
                if case .protocolError = event { return (events, forwarded, true) }
                events.append(event)
            }
            if let out = requests.takeForwardable() { forwarded += out.readableBytesView }
        }
        return (events, forwarded, false)
    }

    // MARK: Vault proxy

    /// The Vault proxy's pure parts, checked for what they promise: a request target as Vault
    /// routes it keeps no empty, `.` or `..` segment (so no spelling dodges a deny prefix), and a
    /// streamed answer split in two (where the first byte says) comes out as long as it went in,
    /// with neither token (the current one and one sent before it) anywhere in it.
    static func vaultProxy(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let input = Array(bytes.dropFirst())
        let path = Array(VaultHeaders.routedPath(String(decoding: input, as: UTF8.self)).utf8)
        let inner = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst().dropLast()
        precondition(path.first == UInt8(ascii: "/") && !inner.contains { $0.isEmpty || $0.elementsEqual(Array("..".utf8)) || $0.elementsEqual([UInt8(ascii: ".")]) },
                     "a routed path kept a segment Vault would resolve: \(path)")

        let tokens = ["s.fuzzTOKEN", "s.fuzzOLD"]
        var redactor = TokenRedactor(masking: tokens.map(Secret.init))
        let middle = Int(first) % (input.count + 1)
        var output: [UInt8] = []
        for piece in [input[..<middle], input[middle...]] {
            output += redactor.redact(ByteBuffer(bytes: piece)).readableBytesView
        }
        output += redactor.finish().readableBytesView
        precondition(output.count == input.count, "masking changed the answer's length")
        for token in tokens { precondition(String(decoding: output, as: UTF8.self).range(of: token) == nil, "a token got through") }
    }

    /// Runs `operation` to its end from the fuzzer's own (non-cooperative) thread.
    private static func blocking(_ operation: @escaping @Sendable () async -> Void) {
        let done = DispatchSemaphore(value: 0)
        Task {
            await operation()
            done.signal()
        }
        done.wait()
    }
}

/// An HTTP client that answers every request with the same status and body: the fuzzer's bytes
/// reach each cloud's response parsing exactly as a server's answer would.
struct ReplayingHTTPClient: HTTPClient {
    var status: Int
    var body: [UInt8]

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
    }
}
