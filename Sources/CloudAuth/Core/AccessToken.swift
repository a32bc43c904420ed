import Foundation

/// A bearer token from a cloud identity endpoint, with the times that govern its refresh.
public struct AccessToken: Sendable {
    /// The token itself.
    public var token: Secret
    /// When it was issued; when the endpoint does not say, when it was received.
    public var issuedAt: Date
    /// When it stops being accepted.
    public var expiresAt: Date
    /// When the issuer asks clients to refresh (Azure's `refresh_in`), if it says.
    public var refreshAfter: Date?
    /// Whether ``expiresAt`` was reckoned on this machine's wall clock, as the time the answer
    /// arrived plus the lifetime it stated (`expires_in`), rather than stated by the issuer as an
    /// instant (`expires_on`): such an expiry moves with a step of this machine's clock.
    public var expiresByLocalClock: Bool

    public init(token: Secret, issuedAt: Date, expiresAt: Date, refreshAfter: Date? = nil, expiresByLocalClock: Bool = false) {
        self.token = token
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.refreshAfter = refreshAfter
        self.expiresByLocalClock = expiresByLocalClock
    }
}
