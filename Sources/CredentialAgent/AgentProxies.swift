import AuthProxy
import CloudAuth
import CredentialModel
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The local proxies of the credentials that have a `proxy:` block: each authenticates upstream
/// with its credential's current secret from the store, so a rotation applies to the next
/// connection. Their listeners start with the agent's socket; readiness does not depend on them.
///
/// A reload adds, removes and replaces proxies: a proxy whose settings, server or user changed
/// closes its listener at once and its open sessions carry on until they end (or the agent
/// stops); its successor listens in its place.
final class AgentProxies: Sendable {
    /// A running proxy and what it was made from.
    private struct Entry: Sendable {
        var name: String
        var proxy: any LocalProxy
        var identity: Identity
        var shutdownGrace: Duration
    }

    /// What makes a proxy the same across a reload: its own settings, the server and the user.
    private struct Identity: Equatable {
        var settings: ProxyConfig
        var connection: CredentialConnection
        var user: String?

        init?(_ credential: CredentialConfig) {
            guard let settings = credential.proxy else { return nil }
            self.settings = settings
            connection = credential.connection
            user = credential.target.user
        }
    }

    private struct State {
        var active: [Entry] = []
        /// Proxies a reload replaced or removed whose sessions were still open.
        var retired: [Entry] = []
        /// The proxies' own event loops, one per CPU (relaying and TLS are CPU work, unlike the
        /// socket API's prebuilt answers); made when the first proxy is.
        var group: MultiThreadedEventLoopGroup?
        var started = false
    }
    private let state = NIOLockedValueBox(State())
    private let store: CredentialStore
    private let refreshers: RefresherDirectory
    private let metrics: AgentMetrics
    private let socketPolicy: @Sendable () -> PeerPolicy
    private let logger: Logger
    private let now: @Sendable () -> Date

    /// - Parameters:
    ///   - refreshers: asked for a fresh Vault token when Vault refuses a Vault proxy's.
    ///   - socketPolicy: the socket's current `allow`, for proxies without their own.
    init(config: AgentConfig, store: CredentialStore, refreshers: RefresherDirectory, metrics: AgentMetrics,
         socketPolicy: @escaping @Sendable () -> PeerPolicy, logger: Logger, now: @escaping @Sendable () -> Date) {
        self.store = store
        self.refreshers = refreshers
        self.metrics = metrics
        self.socketPolicy = socketPolicy
        self.logger = logger
        self.now = now
        let entries = config.credentials.compactMap(makeEntry)
        state.withLockedValue { $0.active = entries }
    }

    /// Binds every proxy's socket; throws the first failure (naming the path).
    /// Does nothing once they listen (the CLI starts listening before ``Agent/run()`` does).
    func start() async throws {
        let entries = state.withLockedValue { state -> [Entry] in
            defer { state.started = true }
            return state.started ? [] : state.active
        }
        for entry in entries {
            try await entry.proxy.start()
            logListening(entry)
        }
    }

    /// Applies a reloaded config: unchanged proxies keep running; removed and changed ones close
    /// their listeners (their open sessions carry on); added and changed ones start. A proxy that
    /// cannot start is logged with the reason and left out.
    func reload(_ config: AgentConfig) async {
        let active = state.withLockedValue { $0.active }
        var kept: [Entry] = []
        var added: [Entry] = []
        for credential in config.credentials {
            guard let identity = Identity(credential) else { continue }
            if let same = active.first(where: { $0.name == credential.name.rawValue && $0.identity == identity }) {
                kept.append(same)
            } else if let entry = makeEntry(credential) {
                added.append(entry)
            }
        }
        let leaving = active.filter { entry in !kept.contains { $0.name == entry.name } }
        for entry in leaving {
            await entry.proxy.stopListening()
            logger.notice("proxy closed by a reload; its open sessions carry on", metadata: [
                "proxy": "\(entry.name)", "open": "\(entry.proxy.openConnections)",
            ])
        }
        var started: [Entry] = []
        for entry in added {
            do {
                try await entry.proxy.start()
                logListening(entry)
                started.append(entry)
            } catch {
                logger.error("proxy not started", metadata: ["proxy": "\(entry.name)", "error": "\(error)"])
            }
        }
        let finished = state.withLockedValue { state -> [Entry] in
            state.active = kept + started
            let retired = state.retired + leaving
            state.retired = retired.filter { $0.proxy.openConnections > 0 }
            return retired.filter { $0.proxy.openConnections == 0 }
        }
        for entry in finished { await entry.proxy.stop(grace: .zero) }
    }

    /// Closes every listener at once, then gives each proxy's open sessions up to its
    /// `shutdown_grace`.
    func stop() async {
        let (entries, group) = state.withLockedValue { state in
            defer { (state.active, state.retired) = ([], []) }
            return (state.active + state.retired, state.group)
        }
        await withDiscardingTaskGroup { tasks in
            for entry in entries {
                tasks.addTask { await entry.proxy.stop(grace: entry.shutdownGrace) }
            }
        }
        try? await group?.shutdownGracefully()
    }

    private func logListening(_ entry: Entry) {
        logger.info("proxy listening", metadata: ["proxy": "\(entry.name)", "listen": "\(entry.identity.settings.listen.description)"])
    }

    /// The event loops, made on first use.
    private var group: MultiThreadedEventLoopGroup {
        state.withLockedValue { state in
            if let group = state.group { return group }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
            state.group = group
            return group
        }
    }

    /// The proxy of `credential`, not started; nil without a `proxy:` block.
    private func makeEntry(_ credential: CredentialConfig) -> Entry? {
        guard let identity = Identity(credential) else { return nil }
        let settings = identity.settings
        let name = credential.name.rawValue
        let ownPolicy = settings.allowUIDs.map { PeerPolicy(allowUIDs: $0, allowGIDs: settings.allowGIDs ?? []) }
        let allows: @Sendable (UnixPeerCredentials) -> Bool = { [socketPolicy] peer in (ownPolicy ?? socketPolicy()).allows(peer) }
        let common = ProxySettings(credential: name, listener: settings.listen, mode: settings.mode, maxConnections: settings.maxConnections,
                                   handshakeTimeout: settings.handshakeTimeout)
        let (store, now) = (self.store, self.now)
        let proxy: any LocalProxy
        switch credential.target {
        case let .postgres(target):
            let configuredUser = target.login.user
            let upstream = target.connection
            proxy = PostgresProxy(
                configuration: PostgresProxyConfiguration(
                    common, idleTimeout: settings.idleTimeout,
                    upstream: ProxyUpstream(host: upstream.host, port: upstream.port, tls: UpstreamTLSMode(sslmode: upstream.sslmode.rawValue),
                                               caFile: upstream.caFile, serverName: nil)),
                credential: {
                    guard let held = store.snapshot(name)?.machine.servable(at: now()),
                          let user = held.credential.username ?? configuredUser else { return nil }
                    return ProxyCredential(username: user, password: held.credential.secret)
                },
                allows: allows, metrics: metrics.proxy(name), logger: logger, group: group)
        case let .redis(target):
            guard let host = target.connection.host else { return nil }
            let configuredUser = target.login.user
            proxy = RedisProxy(
                configuration: RedisProxyConfiguration(
                    common, reauthBefore: settings.reauthBefore,
                    upstream: ProxyUpstream(host: host, port: target.connection.port, tls: target.connection.tls ? .verifyFull : .disable,
                                            caFile: target.connection.caFile)),
                credential: {
                    guard let held = store.snapshot(name)?.machine.servable(at: now()),
                          let user = held.credential.username ?? configuredUser else { return nil }
                    return ExpiringProxyCredential(credential: ProxyCredential(username: user, password: held.credential.secret),
                                                   expiresAt: held.credential.expiresAt)
                },
                allows: allows, metrics: metrics.proxy(name), logger: logger, group: group)
        case let .vault(target):
            let connection = target.connection
            guard let upstream = try? VaultUpstream(address: connection.address, namespace: connection.namespace,
                                                    caFile: connection.caFile, serverName: connection.tlsServerName) else { return nil }
            let refreshers = self.refreshers
            proxy = VaultProxy(
                configuration: VaultProxyConfiguration(
                    common, idleTimeout: settings.idleTimeout ?? ProxyConfig.defaultVaultIdleTimeout,
                    requireRequestHeader: settings.requireRequestHeader, denyPaths: settings.denyPaths, upstream: upstream),
                token: { store.snapshot(name)?.machine.servable(at: now())?.credential.secret },
                relogin: { _ in
                    // A forced refresh: Vault's renewal of a revoked token fails, so the source logs in again.
                    guard let refresher = refreshers[name],
                          case let .success(snapshot) = await refresher.credential(minValid: 0, force: true) else { return nil }
                    return snapshot.machine.servable(at: now())?.credential.secret
                },
                allows: allows, metrics: metrics.proxy(name), logger: logger, group: group)
        }
        return Entry(name: name, proxy: proxy, identity: identity, shutdownGrace: settings.shutdownGrace)
    }
}
