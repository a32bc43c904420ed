import CloudAuth
import Synchronization

/// Shares one in-flight operation per key among concurrent callers: when many credentials ask
/// the same identity endpoint for the same token at once, it is asked once.
public final class SingleFlight<Value: Sendable>: Sendable {
    private let inFlight = Mutex([String: Task<Value, any Error>]())

    public init() {}

    public func run(key: String, _ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let task: Task<Value, any Error> = inFlight.withLock { inFlight in
            if let running = inFlight[key] { return running }
            let started = Task { try await operation() }
            inFlight[key] = started
            return started
        }
        defer { inFlight.withLock { inFlight in if inFlight[key] == task { inFlight[key] = nil } } }
        return try await task.value
    }
}

/// Tokens of one identity shared by the credentials that ask for the same audience: concurrent
/// requests share one fetch, and a token obtained less than ``reuseWindow`` ago is handed out
/// again instead of asking the endpoint (10,000 credentials starting together cost one request).
final class SharedTokens: Sendable {
    /// How long a fetched token answers further requests for the same key.
    static let reuseWindow: Duration = .seconds(2)

    private let flight = SingleFlight<AccessToken>()
    private let recent = Mutex<[String: (token: AccessToken, obtained: ContinuousClock.Instant)]>([:])

    func token(key: String, _ fetch: @escaping @Sendable () async throws -> AccessToken) async throws -> AccessToken {
        let now = ContinuousClock.now
        if let cached = recent.withLock({ $0[key] }), cached.obtained.duration(to: now) < Self.reuseWindow {
            return cached.token
        }
        let token = try await flight.run(key: key, fetch)
        recent.withLock { $0[key] = (token, ContinuousClock.now) }
        return token
    }
}
