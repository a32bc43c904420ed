import CloudAuth
import CredentialModel
import Foundation

/// One credential to check: its secret and the `connection` it is for (as the agent serves it,
/// or as its config entry describes it). Picks the probe for the kind and runs it.
///
/// This is what `credagent test` runs for each credential, whether the secret came from a running
/// agent or was obtained directly.
public struct ConnectivityCheck: Sendable {
    public var name: String
    public var provider: CredentialProvider?
    /// The user to present (postgres and redis).
    public var username: String?
    /// The password or token.
    public var secret: Secret
    public var connection: CredentialConnection
    /// When set, the check connects through the credential's local proxy listening here, with no
    /// secret (the proxy authenticates), instead of to the server.
    public var proxy: ProxyListenAddress?
    /// The uids the process serving `proxy` may run as: an answer from another is not believed.
    public var trustedProxy: TrustedServerUIDs

    public init(name: String, provider: CredentialProvider? = nil, username: String? = nil, secret: Secret,
                connection: CredentialConnection, proxy: ProxyListenAddress? = nil, trustedProxy: TrustedServerUIDs = TrustedServerUIDs()) {
        self.name = name
        self.proxy = proxy
        self.trustedProxy = trustedProxy
        self.provider = provider
        self.username = username
        self.secret = secret
        self.connection = connection
    }

    /// The check of a credential as the agent served it.
    public init(_ credential: ServedCredential) {
        self.init(name: credential.name.rawValue, provider: credential.provider, username: credential.username,
                  secret: credential.secret, connection: credential.connection)
    }

    /// Checks the agent's answer for `name` (its credential JSON); `caFile`, when given, takes the
    /// place of the CA bundle the answer names; `viaProxy` connects through the proxy the answer
    /// names, believing only a proxy run by `trustedProxy`. An answer this client cannot read is
    /// reported as invalid input, an unknown kind saying which kinds there are.
    public static func run(answer: [UInt8], name: String, caFile: String? = nil, viaProxy: Bool = false,
                           trustedProxy: TrustedServerUIDs = TrustedServerUIDs()) async -> ProbeReport {
        let credential: ServedCredential
        do {
            credential = try JSONDecoder().decode(ServedCredential.self, from: Data(answer))
        } catch {
            struct Kind: Decodable { var kind: String? }
            let kind = (try? JSONDecoder().decode(Kind.self, from: Data(answer)))?.kind
            if let kind, CredentialKind(rawValue: kind) == nil {
                return ProbeReport(name: name, kind: kind, endpoint: "-", failure: ProbeFailure(
                    .invalidInput, "kind '\(kind)' has no connectivity check",
                    remedy: "kinds are \(CredentialKind.allCases.map(\.rawValue).joined(separator: ", ").replacingLastComma)"))
            }
            return ProbeReport(name: name, kind: kind ?? "-", endpoint: "-", failure: ProbeFailure(
                .invalidInput, "the agent's answer is not a credential this client understands",
                remedy: "is the agent a newer version than this credagent?"))
        }
        var check = ConnectivityCheck(credential)
        if let caFile { check.connection.caFile = caFile }
        if viaProxy {
            guard let proxy = credential.proxy else { return check.noProxy() }
            check.proxy = proxy
            check.trustedProxy = trustedProxy
        }
        return await check.run()
    }

    /// Connects, authenticates and reports; never throws: every failure is in the report.
    public func run() async -> ProbeReport {
        var report: ProbeReport
        switch connection {
        case let .postgres(connection):
            guard let database = connection.database, let username else {
                let lacking = [connection.database == nil ? "a database" : nil, username == nil ? "a username" : nil]
                return missing(lacking.compactMap { $0 }.joined(separator: " and "))
            }
            var target = PostgresTarget(host: connection.host, port: connection.port, database: database, user: username,
                                        password: secret, sslmode: connection.sslmode.rawValue, caFile: connection.caFile)
            if let proxy {
                // The local hop is plain; the proxy does TLS to the server and answers its password request.
                // A socket directory's socket is .s.PGSQL.5432, which libpq finds with port 5432.
                let (hostOrPath, port) = proxy.clientEndpoint
                (target.host, target.port) = (hostOrPath, port ?? 5432)
                (target.password, target.sslmode, target.caFile) = (Secret(""), "disable", nil)
                target.trustedServer = trustedProxy
            }
            report = await PostgresProbe(name: name, target: target).run()
        case let .redis(connection):
            guard let host = connection.host else { return missing("a host") }
            var target = RedisTarget(host: host, port: connection.port, user: username, password: secret,
                                     tls: connection.tls, caFile: connection.caFile)
            if let proxy {
                let (hostOrPath, port) = proxy.clientEndpoint
                if let port { (target.host, target.port) = (hostOrPath, port) } else { target.unixPath = hostOrPath }
                (target.password, target.tls, target.caFile) = (nil, false, nil)
                target.trustedServer = trustedProxy
            }
            report = await RedisProbe(name: name, target: target).run()
        case let .vault(connection):
            var endpoint = VaultEndpoint(address: connection.address, namespace: connection.namespace,
                                         tls: TLSOptions(caFile: connection.caFile, serverName: connection.tlsServerName))
            if let proxy {
                // The proxy sets the token and the namespace.
                let (hostOrPath, port) = proxy.clientEndpoint
                endpoint = port == nil
                    ? VaultEndpoint(address: "http://localhost", unixSocketPath: hostOrPath, trustedServerUIDs: trustedProxy.uids)
                    : VaultEndpoint(address: "http://\(proxy.description)", trustedServerUIDs: trustedProxy.uids)
            }
            report = await VaultProbe(name: name, endpoint: endpoint, token: secret).run()
        }
        report.provider = provider?.rawValue
        if let proxy { report.details.append(ProbeDetail("via", proxy.description)) }
        return report
    }

    /// The report for a `--via-proxy` check of a credential without a proxy.
    public func noProxy() -> ProbeReport {
        ProbeReport(name: name, kind: connection.kind.rawValue, provider: provider?.rawValue, endpoint: connection.endpoint,
                    failure: ProbeFailure(.invalidInput, "the credential has no local proxy",
                                          remedy: "give it a proxy: block in the agent's config (docs/PROXY.md), or check it without --via-proxy"))
    }

    private func missing(_ fields: String) -> ProbeReport {
        let kind = connection.kind.rawValue
        return ProbeReport(name: name, kind: kind, provider: provider?.rawValue, endpoint: connection.endpoint,
                           failure: ProbeFailure(.invalidInput, "the credential lacks \(fields) for a \(kind) check"))
    }
}

private extension String {
    /// `a, b, c` as `a, b and c`.
    var replacingLastComma: String {
        guard let range = range(of: ", ", options: .backwards) else { return self }
        return replacingCharacters(in: range, with: " and ")
    }
}
