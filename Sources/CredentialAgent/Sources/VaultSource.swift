import CloudAuth
import CredentialModel
import Foundation
import Logging

/// Keeps one Vault token alive: logs in with the cloud identity, renews the token at each refresh
/// point while Vault allows it, and logs in again when it does not.
///
/// A renewal that comes back shorter than the lease the role grants has been capped by the max
/// TTL: that token is served until its refresh point and then replaced by a fresh login. A renewal
/// refused with 403 (revoked, expired, past its max TTL) also leads straight to a fresh login.
public actor VaultCredentialSource: CredentialSource {
    private let client: VaultClient
    private let login: VaultLogin
    private let mount: String
    private let revokeOnShutdown: Bool
    private let logger: Logger
    private var current: VaultToken?
    /// The lease a fresh login grants: the increment asked for on renewal.
    private var grantedLease = 0
    private var renewalCapped = false

    public init(client: VaultClient, login: VaultLogin, mount: String, revokeOnShutdown: Bool = false,
                logger: Logger) {
        self.client = client
        self.login = login
        self.mount = mount
        self.revokeOnShutdown = revokeOnShutdown
        self.logger = logger
    }

    public func fetch(now: Date) async throws -> IssuedCredential {
        if let token = current, token.renewable, !renewalCapped, token.expiresAt > now {
            do {
                let renewed = try await client.renewSelf(token.clientToken, increment: grantedLease)
                if renewed.leaseDuration < grantedLease {
                    renewalCapped = true
                    logger.debug("vault token renewal capped by max TTL; next refresh logs in again",
                                 metadata: ["vault.lease_seconds": "\(renewed.leaseDuration)"])
                }
                current = renewed
                return issued(renewed)
            } catch let error as CloudAuthError where error.code == .rejected {
                logger.info("vault token renewal refused; logging in again", metadata: ["error": "\(error)"])
            }
        }
        let token = try await client.login(mount: mount, payload: try await login.payload(now: now))
        guard token.leaseDuration > 0 else {
            // A token without a lease never expires: nothing to keep fresh, and a credential that
            // should not exist. Refuse it rather than hand it out.
            throw CloudAuthError(.rejected, source: "Vault \(client.endpoint.address)/v1/auth/\(mount)/login",
                                 "the login returned a token with lease_duration 0 (a non-expiring token)",
                                 remedy: "give the role a token_ttl so that its tokens expire")
        }
        current = token
        grantedLease = token.leaseDuration
        renewalCapped = false
        return issued(token)
    }

    public func shutdown() async {
        guard revokeOnShutdown, let token = current else { return }
        do {
            try await client.revokeSelf(token.clientToken)
            current = nil
        } catch {
            logger.warning("vault token revocation failed", metadata: ["error": "\(error)"])
        }
    }

    private func issued(_ token: VaultToken) -> IssuedCredential {
        IssuedCredential(
            username: nil, secret: token.clientToken, issuedAt: token.issuedAt, expiresAt: token.expiresAt,
            expiresByLocalClock: true, attributes: ["accessor": .string(token.accessor), "renewable": .bool(token.renewable),
                         "lease_duration": .int(token.leaseDuration)])
    }
}
