import CloudAuth
import Synchronization

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
        // Kept within the shared fetch, so that a request arriving as it ends finds the token.
        return try await flight.run(key: key) { [self] in
            let token = try await fetch()
            recent.withLock { $0[key] = (token, ContinuousClock.now) }
            return token
        }
    }
}
