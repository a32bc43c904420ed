import CloudAuth
import CloudEmulator
import Foundation

/// Sets up the OpenBao peer for a test (auth mounts, roles, policies) with its root token.
struct BaoAdmin {
    let address: String
    let rootToken: Secret
    let http = CurlHTTPClient()

    /// The plain-HTTP OpenBao that scripts/peers/openbao started, or nil when it is not running.
    static func fromEnvironment() -> BaoAdmin? {
        guard let address = Peers.env("CREDAGENT_TEST_BAO_ADDR"),
              let tokenFile = Peers.env("CREDAGENT_TEST_BAO_TOKEN_FILE"),
              let token = try? String(contentsOfFile: tokenFile, encoding: .utf8) else { return nil }
        return BaoAdmin(address: address, rootToken: Secret(token.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    static var available: Bool { fromEnvironment() != nil }

    /// Sends `body` to `/v1/{path}` with the root token and returns the decoded answer.
    @discardableResult
    func call(_ method: String = "POST", _ path: String, _ body: [String: Any] = [:],
              namespace: String? = nil) async throws -> [String: Any] {
        let data = body.isEmpty ? Data() : try JSONSerialization.data(withJSONObject: body)
        var headers: HTTPHeaders = ["X-Vault-Token": rootToken.reveal(), "Content-Type": "application/json"]
        if let namespace { headers.add("X-Vault-Namespace", namespace) }
        let response = try await http.execute(HTTPRequest(
            method: method, url: "\(address)/v1/\(path)", headers: headers, body: Array(data)))
        guard response.isSuccess else {
            throw CloudAuthError(.rejected, source: path, "OpenBao answered \(response.status): \(response.bodyText)")
        }
        if response.body.isEmpty { return [:] }
        return (try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:]
    }

    /// Mounts an auth method at `path` unless it is mounted already.
    func enableAuth(_ type: String, at path: String) async throws {
        let mounts = try await call("GET", "sys/auth")
        let table = (mounts["data"] as? [String: Any]) ?? mounts
        if table["\(path)/"] != nil { return }
        try await call("POST", "sys/auth/\(path)", ["type": type])
    }

    /// An AppRole at a fresh mount with the given token TTLs; returns (mount, role_id, secret_id).
    func makeAppRole(ttl: String, maxTTL: String, renewable: Bool = true) async throws -> (mount: String, roleID: String, secretID: Secret) {
        let mount = "approle-\(UUID().uuidString.prefix(8).lowercased())"
        try await enableAuth("approle", at: mount)
        try await call("POST", "auth/\(mount)/role/gateway", [
            "token_ttl": ttl, "token_max_ttl": maxTTL, "token_policies": ["default"],
            "token_no_default_policy": false, "token_type": "service",
            "token_num_uses": 0, "token_period": 0, "token_explicit_max_ttl": 0,
            "bind_secret_id": true, "token_renewable": renewable,
        ])
        let roleID = try await call("GET", "auth/\(mount)/role/gateway/role-id")
        let secretID = try await call("POST", "auth/\(mount)/role/gateway/secret-id")
        let id = (roleID["data"] as? [String: Any])?["role_id"] as? String ?? ""
        let secret = (secretID["data"] as? [String: Any])?["secret_id"] as? String ?? ""
        return (mount, id, Secret(secret))
    }

    /// jwt auth at a fresh mount trusting the keys at `jwksURL` (and `issuer`, when given), with
    /// one role `gateway` bound to `audience`; returns the mount path.
    func mountJWT(jwksURL: String, issuer: String?, audience: String, userClaim: String,
                  ttl: String = "20s", maxTTL: String = "60s") async throws -> String {
        let mount = "jwt-\(UUID().uuidString.prefix(8).lowercased())"
        try await enableAuth("jwt", at: mount)
        var config: [String: Any] = ["jwks_url": jwksURL]
        if let issuer { config["bound_issuer"] = issuer }
        try await call("POST", "auth/\(mount)/config", config)
        try await call("POST", "auth/\(mount)/role/gateway", [
            "role_type": "jwt", "bound_audiences": [audience], "user_claim": userClaim,
            "token_policies": ["default"], "token_ttl": ttl, "token_max_ttl": maxTTL,
        ])
        return mount
    }

    /// jwt auth trusting `emulator`'s GCP issuer, role `gateway` bound to `audience`.
    func mountGCPJWT(_ emulator: CloudEmulator, audience: String = "vault/gateway",
                     ttl: String = "20s", maxTTL: String = "60s") async throws -> String {
        try await mountJWT(jwksURL: "\(emulator.gcpIssuer)/oauth2/v3/certs", issuer: emulator.gcpIssuer,
                           audience: audience, userClaim: "email", ttl: ttl, maxTTL: maxTTL)
    }

    /// The `credentials:` section of an agent config holding one credential, `vault`, that logs
    /// in at `mount` with the GCP identity (method jwt, audience `vault/gateway`); `extra` lines
    /// (`key: value`) are added to the entry.
    func vaultCredentialsYAML(mount: String, extra: [String] = []) -> String {
        (["credentials:", "  - name: vault", "    kind: vault", "    provider: gcp", "    method: jwt",
          "    address: \(address)", "    mount: \(mount)", "    role: gateway", "    audience: vault/gateway"]
            + extra.map { "    " + $0 }).joined(separator: "\n")
    }
}
