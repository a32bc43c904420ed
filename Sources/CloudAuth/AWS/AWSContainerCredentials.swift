import Foundation

/// Credentials from the ECS task role endpoint or EKS Pod Identity agent, configured by the
/// `AWS_CONTAINER_*` variables that those platforms set.
struct AWSContainerCredentials: Sendable {
    static let ecsHost = "http://169.254.170.2"
    /// Plain-http hosts the SDKs accept for `AWS_CONTAINER_CREDENTIALS_FULL_URI` (https is always
    /// fine): loopback, the ECS agent, and the EKS Pod Identity agent's IPv4 and IPv6 addresses.
    static let containerAgentHosts: Set<String> = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]

    let url: String
    /// The env var that gave `url`, for messages.
    let urlSource: String
    let environment: [String: String]
    let http: any HTTPClient

    /// nil when neither `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` nor `..._FULL_URI` is set.
    init?(environment: [String: String], http: any HTTPClient) throws {
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            url = Self.ecsHost + (relative.hasPrefix("/") ? relative : "/" + relative)
            urlSource = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
        } else if let full = environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !full.isEmpty {
            let parsed = try EndpointURL(parsing: full)
            let bare = parsed.host.trimmingCharacters(in: ["[", "]"])
            guard parsed.scheme == "https" || HostAddress.isLoopback(parsed.host) || Self.containerAgentHosts.contains(bare) else {
                throw CloudAuthError(.invalidInput, source: "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                     "plain http to '\(parsed.host)' is not allowed",
                                     remedy: "use https, a loopback address, 169.254.170.2, 169.254.170.23 or fd00:ec2::23")
            }
            url = full
            urlSource = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
        } else {
            return nil
        }
        self.environment = environment
        self.http = http
    }

    func credentials() async throws -> AWSCredentials {
        var headers = HTTPHeaders()
        if let token = try await authorizationToken() { headers.add("Authorization", token.reveal()) }
        let source = "container endpoint \(EndpointURL.stripQuery(url)) (\(urlSource))"
        let response: HTTPResponse
        do {
            response = try await http.execute(HTTPRequest(url: url, headers: headers, timeouts: .metadata,
                                                          maxResponseBytes: 64 * 1024))
        } catch var error as CloudAuthError {
            error.source = source  // name the env var that chose this endpoint
            throw error
        }
        guard response.isSuccess else {
            let detail = (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
                .flatMap { $0["message"] as? String ?? $0["Message"] as? String }.map(UpstreamText.excerpt)
            throw CloudAuthError(response.status >= 500 ? .unavailable : .rejected, source: source,
                                 "answered HTTP \(response.status)" + (detail.map { ": \($0)" } ?? ""))
        }
        return try AWSResponseParsing.credentialJSON(response.body, source: source, label: "container")
    }

    /// The `Authorization` value: the token file's content (re-read on every fetch, the platform
    /// rotates it) or `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    private func authorizationToken() async throws -> Secret? {
        var token: String?
        var origin = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
        if let file = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], !file.isEmpty {
            origin = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (\(file))"
            do {
                token = try await LocalFile.readTrimmedText(file)
            } catch {
                throw CloudAuthError(.io, source: origin, "the token file cannot be read",
                                     remedy: "check that the file exists and this user may read it")
            }
        } else {
            token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        }
        guard let token, !token.isEmpty else { return nil }
        guard !token.contains(where: { $0 == "\r" || $0 == "\n" }) else {
            throw CloudAuthError(.invalidInput, source: origin, "the token contains a line break")
        }
        return Secret(token)
    }
}
