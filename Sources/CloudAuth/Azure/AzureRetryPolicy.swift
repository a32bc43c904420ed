/// How Azure managed identity requests are retried, as Microsoft documents for IMDS: exponential
/// backoff on 404 (IMDS updating), 410, 429 and 5xx, honouring `Retry-After`, bounded in total.
///
/// Transport failures (connection refused, timeouts) are not retried here: off Azure, IMDS never
/// answers, and the agent's refresher owns longer backoff.
public struct AzureRetryPolicy: Sendable {
    /// Attempts in all, the first included.
    public var maxAttempts: Int
    /// The delay before the second attempt; each later one doubles it.
    public var initialDelay: Duration
    /// No single delay is longer than this, whatever `Retry-After` asks.
    public var maxDelay: Duration
    /// The sum of all delays stays under this.
    public var totalDelayLimit: Duration
    /// Waits between attempts; tests substitute one that records instead of sleeping.
    public var sleep: @Sendable (Duration) async throws -> Void

    public init(maxAttempts: Int = 5, initialDelay: Duration = .seconds(1), maxDelay: Duration = .seconds(8),
                totalDelayLimit: Duration = .seconds(25),
                sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) {
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.totalDelayLimit = totalDelayLimit
        self.sleep = sleep
    }

    /// 5 attempts, 1 s doubling up to 8 s, at most 25 s of waiting.
    public static let standard = AzureRetryPolicy()

    /// Statuses a managed identity endpoint (IMDS, App Service) answers while it is busy or updating.
    static let managedIdentityStatuses: Set<Int> = [404, 410, 429]
    /// Statuses Entra ID answers when it is throttling or failing.
    static let entraStatuses: Set<Int> = [429]

    /// Sends `makeRequest()` until it succeeds, fails for good, or the attempts or delay budget
    /// run out; returns the last response (which may be a failure for the caller to explain).
    func execute(_ http: any HTTPClient, retrying statuses: Set<Int>,
                 _ makeRequest: () throws -> HTTPRequest) async throws -> HTTPResponse {
        var waited = Duration.zero
        var delay = initialDelay
        var attempt = 1
        while true {
            let response = try await http.execute(try makeRequest())
            let retryable = statuses.contains(response.status) || (500...599).contains(response.status)
            guard retryable, attempt < maxAttempts else { return response }
            var wait = min(delay, maxDelay)
            if let header = response.headers["retry-after"], let seconds = Int(header), seconds >= 0 {
                wait = min(.seconds(seconds), maxDelay)
            }
            guard waited + wait <= totalDelayLimit else { return response }
            try await sleep(wait)
            waited += wait
            delay *= 2
            attempt += 1
        }
    }
}
