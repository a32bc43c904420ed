import CloudAuth
import CredentialModel
import Foundation

/// One secret obtained from a cloud or Vault, with the times that govern its refresh.
public struct IssuedCredential: Sendable {
    /// The user name to present with the secret, when the protocol has one.
    public var username: String?
    public var secret: Secret
    public var issuedAt: Date
    public var expiresAt: Date
    /// When the issuer asks to be asked again, if it says (Azure's `refresh_in`).
    public var refreshAfter: Date?
    /// Non-secret extras for the JSON answer, keyed by JSON field name.
    public var attributes: [String: CredentialAttribute]
    /// Whether the times were reckoned on this machine's wall clock from a lifetime the issuer
    /// stated (`expires_in`, a Vault lease), so that they move when that clock is stepped; false
    /// when the issuer stated the expiry as an instant (AWS `Expiration`, a signature's date).
    public var expiresByLocalClock: Bool

    public init(username: String?, secret: Secret, issuedAt: Date, expiresAt: Date, refreshAfter: Date? = nil,
                expiresByLocalClock: Bool = false, attributes: [String: CredentialAttribute] = [:]) {
        self.username = username
        self.secret = secret
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.refreshAfter = refreshAfter
        self.expiresByLocalClock = expiresByLocalClock
        self.attributes = attributes
    }
}

/// Obtains fresh credentials of one configured kind; the agent decides when to call it.
public protocol CredentialSource: Sendable {
    /// A new credential; `now` is the agent's current time (tokens signed locally use it).
    func fetch(now: Date) async throws -> IssuedCredential
    /// Releases what the source holds upstream (Vault revokes its token) when the credential is
    /// removed or the agent stops.
    func shutdown() async
}

extension CredentialSource {
    public func shutdown() async {}
}
