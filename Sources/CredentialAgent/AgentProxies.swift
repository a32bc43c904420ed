import AuthProxy
import CloudAuth
import CredentialModel
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The local proxies of the credentials that have a `proxy:` block: each authenticates upstream
/// with its credential's current secret from the store, so a rotation applies to the next
/// connection. Their listeners start with the agent's socket; readiness does not depend on them.
final class AgentProxies: Sendable {
    private struct Entry: Sendable {
        var name: String
        var listen: ProxyListenAddress
        var start: @Sendable () async throws -> Void
        var stop: @Sendable (Duration) async -> Void
        var shutdownGrace: Duration
    }
    private let entries: [Entry]
    /// The proxies' own event loops, one per CPU (relaying and TLS are CPU work, unlike the
    /// socket API's prebuilt answers); made only when some credential has a proxy.
    private let group: MultiThreadedEventLoopGroup?

    /// - Parameters:
    ///   - refreshers: asked for a fresh Vault token when Vault refuses a Vault proxy's.
    ///   - socketPolicy: the socket's current `allow`, for proxies without their own.
    init(config: AgentConfig, store: CredentialStore, refreshers: RefresherDirectory, metrics: AgentMetrics,
         socketPolicy: @escaping @Sendable () -> PeerPolicy, logger: Logger, now: @escaping @Sendable () -> Date) {
        let group = config.credentials.contains { $0.proxy != nil }
            ? MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount) : nil
        self.group = group
        entries = config.credentials.compactMap { credential in
            guard let group, let settings = credential.proxy else { return nil }
            let name = credential.name.rawValue
            let ownPolicy = settings.allowUIDs.map { PeerPolicy(allowUIDs: $0, allowGIDs: settings.allowGIDs ?? []) }
            let allows: @Sendable (UnixPeerCredentials) -> Bool = { peer in (ownPolicy ?? socketPolicy()).allows(peer) }
            let grace = Duration.seconds(settings.shutdownGrace)
            let handshakeTimeout = Duration.seconds(settings.handshakeTimeout)
            switch credential.target {
            case let .postgres(target):
                let configuredUser = target.login.user
                let upstream = target.connection
                let configuration = PostgresProxyConfiguration(
                    credential: name, listener: settings.listen, mode: settings.mode, maxConnections: settings.maxConnections,
                    handshakeTimeout: handshakeTimeout, idleTimeout: settings.idleTimeout.map { .seconds($0) },
                    upstream: PostgresUpstream(host: upstream.host, port: upstream.port, tls: UpstreamTLSMode(sslmode: upstream.sslmode.rawValue),
                                               caFile: upstream.caFile, serverName: nil))
                let proxy = PostgresProxy(
                    configuration: configuration,
                    credential: {
                        guard let held = store.snapshot(name)?.machine.servable(at: now()),
                              let user = held.credential.username ?? configuredUser else { return nil }
                        return ProxyCredential(username: user, password: held.credential.secret)
                    },
                    allows: allows, metrics: metrics.proxy(name), logger: logger, group: group)
                return Entry(name: name, listen: settings.listen, start: { try await proxy.start() },
                             stop: { await proxy.stop(grace: $0) }, shutdownGrace: grace)
            case let .redis(target):
                guard let host = target.connection.host else { return nil }
                let configuredUser = target.login.user
                let configuration = RedisProxyConfiguration(
                    credential: name, listener: settings.listen, mode: settings.mode, maxConnections: settings.maxConnections,
                    handshakeTimeout: handshakeTimeout, reauthBefore: .seconds(settings.reauthBefore),
                    upstream: RedisUpstream(host: host, port: target.connection.port, tls: target.connection.tls ? .verifyFull : .disable,
                                            caFile: target.connection.caFile))
                let proxy = RedisProxy(
                    configuration: configuration,
                    credential: {
                        guard let held = store.snapshot(name)?.machine.servable(at: now()),
                              let user = held.credential.username ?? configuredUser else { return nil }
                        return ExpiringProxyCredential(credential: ProxyCredential(username: user, password: held.credential.secret),
                                                       expiresAt: held.credential.expiresAt)
                    },
                    allows: allows, metrics: metrics.proxy(name), logger: logger, group: group)
                return Entry(name: name, listen: settings.listen, start: { try await proxy.start() },
                             stop: { await proxy.stop(grace: $0) }, shutdownGrace: grace)
            case let .vault(target):
                let connection = target.connection
                guard let upstream = try? VaultUpstream(address: connection.address, namespace: connection.namespace,
                                                        caFile: connection.caFile, serverName: connection.tlsServerName) else { return nil }
                let configuration = VaultProxyConfiguration(
                    credential: name, listener: settings.listen, mode: settings.mode, maxConnections: settings.maxConnections,
                    handshakeTimeout: handshakeTimeout,
                    idleTimeout: .seconds(settings.idleTimeout ?? ProxyConfig.defaultVaultIdleTimeout),
                    requireRequestHeader: settings.requireRequestHeader, denyPaths: settings.denyPaths, upstream: upstream)
                let proxy = VaultProxy(
                    configuration: configuration,
                    token: { store.snapshot(name)?.machine.servable(at: now())?.credential.secret },
                    relogin: { _ in
                        // A forced refresh: Vault's renewal of a revoked token fails, so the source logs in again.
                        guard let refresher = refreshers[name],
                              case let .success(snapshot) = await refresher.credential(minValid: 0, force: true) else { return nil }
                        return snapshot.machine.servable(at: now())?.credential.secret
                    },
                    allows: allows, metrics: metrics.proxy(name), logger: logger, group: group)
                return Entry(name: name, listen: settings.listen, start: { try await proxy.start() },
                             stop: { await proxy.stop(grace: $0) }, shutdownGrace: grace)
            }
        }
    }

    /// Binds every proxy's socket; throws the first failure (naming the path).
    func start(logger: Logger) async throws {
        for entry in entries {
            try await entry.start()
            logger.info("proxy listening", metadata: ["proxy": "\(entry.name)", "listen": "\(entry.listen.description)"])
        }
    }

    /// Closes every listener at once, then gives each proxy's open sessions up to its
    /// `shutdown_grace`.
    func stop() async {
        await withDiscardingTaskGroup { group in
            for entry in entries {
                group.addTask { await entry.stop(entry.shutdownGrace) }
            }
        }
        try? await group?.shutdownGracefully()
    }
}
