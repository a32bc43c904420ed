import CloudAuth

/// One credential to check, described by the fields of the agent's credential JSON (or of its
/// config entry): picks the probe for the kind and runs it.
///
/// This is what `credagent test` runs for each credential, whether the secret came from a running
/// agent or was obtained directly.
public struct ConnectivityCheck: Sendable {
    public var name: String
    /// `postgres`, `redis` or `vault`.
    public var kind: String
    public var provider: String?
    /// The user to present (postgres and redis).
    public var username: String?
    /// The password or token.
    public var secret: Secret
    public var host: String?
    public var port: Int?
    /// postgres: the database and libpq sslmode.
    public var database: String?
    public var sslmode: String?
    /// redis: whether to use TLS.
    public var tls: Bool?
    /// vault: the server address and namespace.
    public var address: String?
    public var namespace: String?
    /// CA bundle for the server's certificate (all kinds).
    public var caFile: String?
    /// vault: the name the certificate must carry when it is not the address's host.
    public var tlsServerName: String?

    public init(name: String, kind: String, provider: String? = nil, username: String? = nil, secret: Secret,
                host: String? = nil, port: Int? = nil, database: String? = nil, sslmode: String? = nil,
                tls: Bool? = nil, address: String? = nil, namespace: String? = nil, caFile: String? = nil,
                tlsServerName: String? = nil) {
        self.name = name
        self.kind = kind
        self.provider = provider
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.database = database
        self.sslmode = sslmode
        self.tls = tls
        self.address = address
        self.namespace = namespace
        self.caFile = caFile
        self.tlsServerName = tlsServerName
    }

    /// Connects, authenticates and reports; never throws: every failure is in the report.
    public func run() async -> ProbeReport {
        var report: ProbeReport
        switch kind {
        case "postgres":
            guard let host, let database, let username else { return missing("host, database and username") }
            let target = PostgresTarget(host: host, port: port ?? 5432, database: database, user: username,
                                        password: secret, sslmode: sslmode ?? "verify-full", caFile: caFile)
            report = await PostgresProbe(name: name, target: target).run()
        case "redis":
            guard let host else { return missing("host") }
            let target = RedisTarget(host: host, port: port ?? 6379, user: username, password: secret,
                                     tls: tls ?? true, caFile: caFile)
            report = await RedisProbe(name: name, target: target).run()
        case "vault":
            guard let address else { return missing("address") }
            let endpoint = VaultEndpoint(address: address, namespace: namespace,
                                         tls: TLSOptions(caFile: caFile, serverName: tlsServerName))
            report = await VaultProbe(name: name, endpoint: endpoint, token: secret).run()
        default:
            return failed(ProbeFailure(.invalidInput, "kind '\(kind)' has no connectivity check",
                                       remedy: "kinds are postgres, redis and vault"))
        }
        report.provider = provider
        return report
    }

    private func failed(_ failure: ProbeFailure) -> ProbeReport {
        ProbeReport(name: name, kind: kind, provider: provider, endpoint: endpoint, failure: failure)
    }

    private var endpoint: String {
        if kind == "vault" { return address ?? "-" }
        return host.map { "\($0):\(port.map(String.init) ?? "-")" } ?? "-"
    }

    private func missing(_ fields: String) -> ProbeReport {
        failed(ProbeFailure(.invalidInput, "the credential lacks \(fields) for a \(kind) check"))
    }
}
