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

    public init(token: Secret, issuedAt: Date, expiresAt: Date, refreshAfter: Date? = nil) {
        self.token = token
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.refreshAfter = refreshAfter
    }
}
