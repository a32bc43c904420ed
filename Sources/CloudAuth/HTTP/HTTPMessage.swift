/// Header fields in order, looked up case-insensitively.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}
    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { fields.append((name, value)) }
    }

    /// Adds a field, keeping any earlier field of the same name.
    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    /// Sets a field, replacing every earlier field of the same name.
    public mutating func replace(_ name: String, _ value: String) {
        fields.removeAll { $0.name.lowercased() == name.lowercased() }
        fields.append((name, value))
    }

    /// The first value of the named field.
    public subscript(name: String) -> String? {
        let key = name.lowercased()
        return fields.first { $0.name.lowercased() == key }?.value
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

/// Connect and total time limits for one request, in seconds.
public struct HTTPTimeouts: Sendable, Equatable {
    public var connect: Double
    public var total: Double
    public init(connect: Double, total: Double) {
        self.connect = connect
        self.total = total
    }
    /// For cloud APIs: 5 s to connect, 30 s in all.
    public static let standard = HTTPTimeouts(connect: 5, total: 30)
    /// For link-local metadata services, which answer at once or not at all.
    public static let metadata = HTTPTimeouts(connect: 1, total: 5)
}

/// TLS settings for servers with a private CA (Vault, Redis, Postgres).
public struct TLSOptions: Sendable, Equatable {
    /// PEM bundle of CAs to trust instead of the system store.
    public var caFile: String?
    /// Name to verify the certificate against (and send as SNI) when it differs from the URL's host.
    public var serverName: String?
    public init(caFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
    }
}

/// One outbound HTTP request.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var timeouts: HTTPTimeouts
    /// Responses larger than this fail instead of filling memory.
    public var maxResponseBytes: Int
    public var tls: TLSOptions
    /// Talk HTTP over this Unix socket instead of TCP (the URL's host then only fills `Host`).
    public var unixSocketPath: String?
    /// The uids the process serving a local socket may run as (the Unix socket of
    /// `unixSocketPath`, or a loopback TCP server), checked on connecting, before anything is sent
    /// (``SocketOwner``); another one fails the request with ``UntrustedSocketPeer``. Nil accepts any.
    public var trustedServerUIDs: Set<UInt32>?

    public init(method: String = "GET", url: String, headers: HTTPHeaders = [:], body: [UInt8] = [],
                timeouts: HTTPTimeouts = .standard, maxResponseBytes: Int = 1 << 20,
                tls: TLSOptions = TLSOptions(), unixSocketPath: String? = nil, trustedServerUIDs: Set<UInt32>? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeouts = timeouts
        self.maxResponseBytes = maxResponseBytes
        self.tls = tls
        self.unixSocketPath = unixSocketPath
        self.trustedServerUIDs = trustedServerUIDs
    }
}

/// A complete HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public init(status: Int, headers: HTTPHeaders, body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public var isSuccess: Bool { (200..<300).contains(status) }
}

/// Sends HTTP requests. ``CurlHTTPClient`` is the real one; tests may substitute another.
public protocol HTTPClient: Sendable {
    func execute(_ request: HTTPRequest) async throws -> HTTPResponse
}
