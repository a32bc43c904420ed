internal import CCurl
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP client for every outbound call: libcurl easy handles run on a ``BlockingExecutor``.
///
/// Guarantees: connect and total timeouts from the request, a response size cap, redirects
/// followed only to the same scheme, host and port (at most three), proxies never used for
/// metadata and loopback hosts, http and https only. Errors name the URL without its query and
/// the cause, never a header or body.
public struct CurlHTTPClient: HTTPClient {
    private let executor: BlockingExecutor

    public init(executor: BlockingExecutor = .shared) {
        CurlGlobal.ensureInitialised()
        self.executor = executor
    }

    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        var current = request
        var endpoint = try EndpointURL(parsing: request.url)
        for _ in 0...3 {
            let response = try await perform(current, endpoint: endpoint)
            guard [301, 302, 303, 307, 308].contains(response.status),
                  let location = response.headers["location"] else { return response }
            let target = try resolve(location: location, against: endpoint)
            guard target.scheme == endpoint.scheme, target.host == endpoint.host,
                  target.effectivePort == endpoint.effectivePort else {
                throw CloudAuthError(.rejected, source: endpoint.redacted,
                                     "refused a redirect to another host (\(target.redacted))")
            }
            if response.status == 303 || (current.method == "POST" && response.status <= 302) {
                current.method = "GET"
                current.body = []
            }
            endpoint = target
            current.url = target.string
        }
        throw CloudAuthError(.rejected, source: request.url.isEmpty ? "?" : endpoint.redacted,
                             "too many redirects")
    }

    private func resolve(location: String, against base: EndpointURL) throws -> EndpointURL {
        if location.contains("://") { return try EndpointURL(parsing: location) }
        var target = base
        if location.hasPrefix("/") {
            let parts = location.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            target.path = String(parts[0])
            target.query = parts.count > 1 ? String(parts[1]) : nil
            return target
        }
        throw CloudAuthError(.malformedResponse, source: base.redacted, "the redirect location is not a URL or an absolute path")
    }

    private func perform(_ request: HTTPRequest, endpoint: EndpointURL) async throws -> HTTPResponse {
        let transfer = CurlTransfer(request: request, endpoint: endpoint)
        return try await withTaskCancellationHandler {
            try await executor.run { try transfer.perform() }
        } onCancel: {
            transfer.cancel()
        }
    }
}

/// `curl_global_init` once per process, before any handle exists.
enum CurlGlobal {
    private static let initialised: Bool = {
        curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK
    }()
    static func ensureInitialised() { _ = initialised }
}

/// One transfer: the easy handle, its buffers and its cancel flag. Lives on one worker thread
/// while `perform` runs; `cancel` may be called from any thread.
private final class CurlTransfer: Sendable {
    let request: HTTPRequest
    let endpoint: EndpointURL
    let cancelled = Atomic<Bool>(false)
    // Only touched by the worker thread inside `perform`.
    nonisolated(unsafe) var body: [UInt8] = []
    nonisolated(unsafe) var headerLines: [String] = []
    nonisolated(unsafe) var tooLarge = false
    nonisolated(unsafe) var uploadOffset = 0
    nonisolated(unsafe) var checkedSocket: Int32?
    nonisolated(unsafe) var untrustedPeer: UntrustedSocketPeer?

    init(request: HTTPRequest, endpoint: EndpointURL) {
        self.request = request
        self.endpoint = endpoint
    }

    func cancel() { cancelled.store(true, ordering: .relaxed) }

    func fail(_ code: CloudAuthError.Code, _ message: String, remedy: String? = nil) -> CloudAuthError {
        CloudAuthError(code, source: "\(request.method) \(endpoint.redacted)", message, remedy: remedy)
    }

    func perform() throws -> HTTPResponse {
        guard let handle = curl_easy_init() else { throw fail(.unavailable, "libcurl could not create a handle") }
        defer { curl_easy_cleanup(handle) }
        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }

        let context = Unmanaged.passUnretained(self).toOpaque()
        var code = CURLE_OK
        func set(_ result: CURLcode) { if code == CURLE_OK { code = result } }

        var connectTo: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(connectTo) }
        if let serverName = request.tls.serverName, serverName.lowercased() != endpoint.host {
            // Verify the certificate (and send SNI) for `serverName` while connecting to the URL's
            // address: ask for the server name and map it to the real host and port.
            var named = endpoint
            named.host = serverName.lowercased()
            set(credagent_curl_setopt_string(handle, CURLOPT_URL, named.string))
            connectTo = curl_slist_append(nil, "\(named.host):\(endpoint.effectivePort):\(endpoint.host):\(endpoint.effectivePort)")
            set(credagent_curl_setopt_slist(handle, CURLOPT_CONNECT_TO, connectTo))
        } else {
            set(credagent_curl_setopt_string(handle, CURLOPT_URL, request.url))
        }
        set(credagent_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(credagent_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        set(credagent_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        set(credagent_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(request.timeouts.connect * 1000)))
        set(credagent_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Int(request.timeouts.total * 1000)))
        set(credagent_curl_setopt_offset(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(request.maxResponseBytes)))
        if endpoint.isMetadataOrLocalHost || request.unixSocketPath != nil {
            set(credagent_curl_setopt_string(handle, CURLOPT_PROXY, ""))
        }
        if let socket = request.unixSocketPath {
            set(credagent_curl_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, socket))
        }
        if request.trustedServerUIDs != nil {
            // The socket is opened here, so that its server can be checked once libcurl has
            // connected it and before it sends anything.
            set(credagent_curl_setopt_opensocket(handle, curlOpenSocket))
            set(credagent_curl_setopt_pointer(handle, CURLOPT_OPENSOCKETDATA, context))
            set(credagent_curl_setopt_prereq(handle, curlCheckServer))
            set(credagent_curl_setopt_pointer(handle, CURLOPT_PREREQDATA, context))
        }
        if let caFile = request.tls.caFile { set(credagent_curl_setopt_string(handle, CURLOPT_CAINFO, caFile)) }
        switch request.method {
        case "GET": set(credagent_curl_setopt_long(handle, CURLOPT_HTTPGET, 1))
        case "HEAD": set(credagent_curl_setopt_long(handle, CURLOPT_NOBODY, 1))
        default: set(credagent_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method))
        }
        if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" {
            set(credagent_curl_setopt_long(handle, CURLOPT_UPLOAD, request.method == "PUT" ? 1 : 0))
            if request.method == "PUT" {
                set(credagent_curl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.count)))
                set(credagent_curl_setopt_data_callback(handle, CURLOPT_READFUNCTION, curlRead))
                set(credagent_curl_setopt_pointer(handle, CURLOPT_READDATA, context))
            } else {
                set(credagent_curl_setopt_long(handle, CURLOPT_POST, 1))
                set(credagent_curl_setopt_offset(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
                set(credagent_curl_setopt_data_callback(handle, CURLOPT_READFUNCTION, curlRead))
                set(credagent_curl_setopt_pointer(handle, CURLOPT_READDATA, context))
            }
        }
        var sawExpect = false
        for (name, value) in request.headers {
            if name.lowercased() == "expect" { sawExpect = true }
            headerList = curl_slist_append(headerList, "\(name): \(value)")
        }
        // curl's "Expect: 100-continue" costs a round trip and some servers mishandle it.
        if !sawExpect { headerList = curl_slist_append(headerList, "Expect:") }
        set(credagent_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList))
        set(credagent_curl_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION, curlWrite))
        set(credagent_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context))
        set(credagent_curl_setopt_data_callback(handle, CURLOPT_HEADERFUNCTION, curlHeader))
        set(credagent_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, context))
        set(credagent_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0))
        set(credagent_curl_setopt_xferinfo(handle, curlProgress))
        set(credagent_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, context))
        guard code == CURLE_OK else { throw fail(.unavailable, "libcurl rejected an option: \(curlMessage(code))") }

        if cancelled.load(ordering: .relaxed) { throw CancellationError() }
        let result = curl_easy_perform(handle)
        if let untrustedPeer { throw untrustedPeer }
        if tooLarge || result == CURLE_FILESIZE_EXCEEDED {
            throw fail(.malformedResponse, "the response is larger than \(request.maxResponseBytes) bytes")
        }
        if result == CURLE_ABORTED_BY_CALLBACK, cancelled.load(ordering: .relaxed) { throw CancellationError() }
        guard result == CURLE_OK else { throw classify(result) }
        var status = 0
        _ = credagent_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: parsedHeaders(), body: body)
    }

    private func classify(_ result: CURLcode) -> CloudAuthError {
        switch result {
        case CURLE_OPERATION_TIMEDOUT:
            return fail(.timeout, "no answer within the time limit (connect \(request.timeouts.connect)s, total \(request.timeouts.total)s)")
        case CURLE_COULDNT_CONNECT:
            return fail(.unavailable, "connection refused or unreachable", remedy: "check that the endpoint runs and the address is right")
        case CURLE_COULDNT_RESOLVE_HOST:
            return fail(.unavailable, "the host name does not resolve")
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE:
            return fail(.rejected, "the server's TLS certificate is not trusted (\(curlMessage(result)))",
                        remedy: "set ca_file to the CA that signed the server certificate")
        case CURLE_SSL_CONNECT_ERROR:
            return fail(.unavailable, "the TLS handshake failed (\(curlMessage(result)))")
        case CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_PARTIAL_FILE:
            return fail(.unavailable, "the connection broke: \(curlMessage(result))")
        default:
            return fail(.unavailable, curlMessage(result))
        }
    }

    private func curlMessage(_ code: CURLcode) -> String {
        String(cString: curl_easy_strerror(code))
    }

    private func parsedHeaders() -> HTTPHeaders {
        var headers = HTTPHeaders()
        for line in headerLines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            headers.add(name, value)
        }
        return headers
    }

    /// Opens the socket libcurl connects with, and remembers it for ``serverIsTrusted()``.
    fileprivate func openSocket(_ address: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
        let fd = socket(address.pointee.family, address.pointee.socktype | Int32(SOCK_CLOEXEC.rawValue), address.pointee.protocol)
        if fd >= 0 { checkedSocket = fd }
        return fd
    }

    /// Whether the process serving the connected socket (Unix, or loopback TCP) runs as a trusted
    /// uid; called once connected, before the request is sent. When not, records why and the
    /// transfer aborts.
    fileprivate func serverIsTrusted() -> Bool {
        let address = request.unixSocketPath ?? endpoint.host + (endpoint.port.map { ":\($0)" } ?? "")
        untrustedPeer = UntrustedSocketPeer.check(connected: checkedSocket, address: address,
                                                  trustedUIDs: request.trustedServerUIDs ?? [])
        return untrustedPeer == nil
    }

    fileprivate func appendBody(_ pointer: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        if body.count + count > request.maxResponseBytes {
            tooLarge = true
            return 0
        }
        pointer.withMemoryRebound(to: UInt8.self, capacity: count) {
            body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count))
        }
        return count
    }

    fileprivate func appendHeader(_ pointer: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        let line = pointer.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
        }
        // A new status line starts a new response (after 1xx or a proxy CONNECT): drop the old headers.
        if line.hasPrefix("HTTP/") { headerLines.removeAll() } else { headerLines.append(line) }
        return count
    }

    fileprivate func readBody(_ pointer: UnsafeMutablePointer<CChar>, _ capacity: Int) -> Int {
        let count = min(capacity, request.body.count - uploadOffset)
        guard count > 0 else { return 0 }
        request.body.withUnsafeBufferPointer { source in
            pointer.withMemoryRebound(to: UInt8.self, capacity: count) {
                $0.update(from: source.baseAddress! + uploadOffset, count: count)
            }
        }
        uploadOffset += count
        return count
    }
}

private func transfer(_ userdata: UnsafeMutableRawPointer?) -> CurlTransfer {
    Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
}

private let curlWrite: credagent_curl_data_callback = { pointer, size, count, userdata in
    transfer(userdata).appendBody(pointer!, size * count)
}
private let curlHeader: credagent_curl_data_callback = { pointer, size, count, userdata in
    transfer(userdata).appendHeader(pointer!, size * count)
}
private let curlRead: credagent_curl_data_callback = { pointer, size, count, userdata in
    transfer(userdata).readBody(pointer!, size * count)
}
private let curlOpenSocket: curl_opensocket_callback = { userdata, _, address in
    transfer(userdata).openSocket(address!)
}
private let curlCheckServer: curl_prereq_callback = { userdata, _, _, _, _ in
    transfer(userdata).serverIsTrusted() ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT
}
private let curlProgress: credagent_curl_xferinfo_callback = { userdata, _, _, _, _ in
    transfer(userdata).cancelled.load(ordering: .relaxed) ? 1 : 0
}
