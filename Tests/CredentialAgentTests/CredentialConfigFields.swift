import CloudAuth
import CredentialModel

/// The parsed credential's fields by the names of the config's keys, nil where its kind has no
/// such key, so that assertions read like the YAML they check.
extension CredentialConfig {
    private var postgres: CredentialTarget.Postgres? { if case let .postgres(target) = target { target } else { nil } }
    private var redis: CredentialTarget.Redis? { if case let .redis(target) = target { target } else { nil } }
    private var vault: CredentialTarget.Vault? { if case let .vault(target) = target { target } else { nil } }
    private var elastiCache: ElastiCacheLogin? { if case let .aws(login)? = redis?.login { login } else { nil } }

    var host: String? { postgres?.connection.host ?? redis?.connection.host }
    var port: Int? { postgres?.connection.port ?? redis?.connection.port }
    var user: String? { target.user }
    var database: String? { postgres?.connection.database }
    var sslmode: String? { postgres?.connection.sslmode.rawValue }
    var tls: Bool? { redis?.connection.tls }
    var caFile: String? { connection.caFile }
    var cacheName: String? { elastiCache?.cacheName }
    var serverless: Bool? { elastiCache?.serverless }
    var engine: RedisEngine? { elastiCache?.engine }
    var address: String? { vault?.connection.address }
    var namespace: String? { vault?.connection.namespace }
    var tlsServerName: String? { vault?.connection.tlsServerName }
    var method: VaultAuthMethod? { vault?.method }
    var mount: String? { vault?.mount }
    var role: String? { vault?.role }
    var serverID: String? { vault?.serverID }
    var audience: String? { vault?.audience }
    var revokeOnShutdown: Bool? { vault?.revokeOnShutdown }
}
