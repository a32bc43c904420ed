import CloudAuth
import CredentialModel
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The credagent daemon as a lifecycle `Service`: it fetches every configured credential
/// concurrently, keeps them fresh, serves them on the Unix socket, reloads the config on SIGHUP
/// and, on graceful shutdown, stops accepting, finishes requests in flight and removes the socket.
public final class Agent: Service, Sendable {
    public let configPath: String
    private let logger: Logger
    private let environment: [String: String]
    private let http: any HTTPClient
    private let now: @Sendable () -> Date

    public let store = CredentialStore()
    public let metrics = AgentMetrics()
    private let refreshers = RefresherDirectory()
    private let sinks: SinkSupervisor
    private let context: ServerContext
    private let server: SocketServer
    private let proxies: AgentProxies
    private let eventLoops: MultiThreadedEventLoopGroup

    private struct Current {
        var config: AgentConfig
        var providers: CloudProviders
    }
    private let current: NIOLockedValueBox<Current>
    private let initialRefreshers: [CredentialRefresher]
    /// SIGHUP, trapped before the socket is listening: a reload asked for as soon as clients can
    /// see the agent is kept until the reload loop runs, not lost (or, untrapped, fatal).
    private let hangups = NIOLockedValueBox<UnixSignalsSequence?>(nil)

    /// How often the wall clock is compared with the monotonic clock to notice jumps and resume
    /// from suspend; every refresher looks at its schedule again when they disagree.
    public static let clockCheckInterval: Duration = .seconds(1)

    /// Builds the agent for a valid `config` (as loaded from `configPath`). Throws when a
    /// credential's source cannot be made; nothing is started until ``run()``.
    public init(config: AgentConfig, configPath: String, logger: Logger,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                http: any HTTPClient = CurlHTTPClient(), eventLoopThreads: Int = 1, now: @escaping @Sendable () -> Date = Date.init) throws {
        self.configPath = configPath
        self.logger = logger
        self.environment = environment
        self.http = http
        self.now = now
        let providers = CloudProviders(config: config, http: http, environment: environment)
        current = NIOLockedValueBox(Current(config: config, providers: providers))
        context = ServerContext(store: store, refreshers: refreshers, metrics: metrics,
                                policy: PeerPolicy(allowUIDs: config.socket.allowUIDs, allowGIDs: config.socket.allowGIDs),
                                limits: ServerLimits(socket: config.socket), logger: logger, now: now)
        sinks = SinkSupervisor(store: store, logger: logger, now: now)
        sinks.apply(config.credentials)
        eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopThreads)
        server = SocketServer(socket: config.socket, context: context, group: eventLoops)
        proxies = AgentProxies(config: config, store: store, refreshers: refreshers, metrics: metrics,
                               socketPolicy: { [context] in context.policy },
                               logger: logger, now: now)
        let factory = CredentialSourceFactory(providers: providers, http: http, environment: environment, logger: logger)
        // Every source first: a credential that cannot be made leaves nothing registered.
        let sources = try config.credentials.map { try factory.make($0) }
        initialRefreshers = zip(config.credentials, sources).map { [store, metrics] credential, source in
            CredentialRefresher(config: credential, source: source, refresh: config.refresh, store: store, metrics: metrics,
                                logger: logger, now: now)
        }
        for refresher in initialRefreshers { refreshers.set(refresher, for: refresher.config.name.rawValue) }
    }

    /// Prepares the socket file and starts listening; ``run()`` does it when not done before.
    /// Separate so that the CLI can report a socket problem as a configuration error.
    public func startListening() async throws {
        if hangups.withLockedValue({ $0 }) == nil {
            let trapped = await UnixSignalsSequence(trapping: .sighup)
            hangups.withLockedValue { $0 = $0 ?? trapped }
        }
        try await server.start()
        try await proxies.start()
    }

    public func run() async throws {
        try await startListening()
        let config = current.withLockedValue { $0.config }
        logger.notice("listening", metadata: [
            "socket.path": "\(server.path)", "socket.mode": "\(String(config.socket.mode, radix: 8))",
            "credentials": "\(config.credentials.count)",
        ])
        if config.socket.sharedDirectory {
            logger.warning("the socket's directory may be shared with other uids (socket.shared_directory); only clients that check the server's uid are safe")
        }
        let (spawns, spawner) = AsyncStream.makeStream(of: CredentialRefresher.self)
        for refresher in initialRefreshers { spawner.yield(refresher) }
        await withDiscardingTaskGroup { group in
            group.addTask {
                try? await gracefulShutdown()
                self.logger.notice("stopping")
                async let proxiesStopped: Void = self.proxies.stop()
                await self.server.stop()
                await proxiesStopped
                spawner.finish()
            }
            group.addTask { await self.watchClock() }
            group.addTask { await self.reloadOnHangup(spawner) }
            group.addTask { await self.sinks.run() }
            for await refresher in spawns {
                group.addTask { await refresher.run() }
            }
            group.cancelAll()
        }
        try? await eventLoops.shutdownGracefully()
        logger.notice("stopped")
    }

    // MARK: Clock jumps

    /// Watches for steps of the wall clock (it moved more or less than the monotonic clock): every
    /// refresher moves the instants it reckoned on that clock by the step and looks at its
    /// expiries at once. A step is seen within ``clockCheckInterval``, well inside the serving
    /// margin that ends serving before an expiry, so a step back never serves a secret past it.
    private func watchClock() async {
        let clock = ContinuousClock()
        var lastWall = now()
        var lastMonotonic = clock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.clockCheckInterval)
            let wall = now(), monotonic = clock.now
            let elapsed = monotonic - lastMonotonic
            let drift = wall.timeIntervalSince(lastWall) - elapsed / .seconds(1)
            if abs(drift) > 2 {
                logger.info("wall clock stepped; moving the times reckoned on it", metadata: ["step_seconds": "\(Int(drift))"])
                for refresher in refreshers.all { refresher.wallClockStepped(by: drift) }
            }
            lastWall = wall
            lastMonotonic = monotonic
        }
    }

    // MARK: Reload

    private func reloadOnHangup(_ spawner: AsyncStream<CredentialRefresher>.Continuation) async {
        guard let hangups = hangups.withLockedValue({ $0 }) else { return }
        for await _ in hangups {
            if Task.isCancelled { break }
            await reload(spawner)
        }
    }

    /// A credential of the new config that needs a new refresher.
    private struct Replacement {
        var credential: CredentialConfig
        var source: any CredentialSource
        /// The refresher it replaces when the credential's own settings are unchanged (only the
        /// refresh or provider section changed): its secret stays served until the new one is in.
        var sameCredential: CredentialRefresher?
        var providerChanged: Bool
    }

    /// Reads the config file again and applies it: unchanged credentials keep their refreshers;
    /// those whose refresh or provider settings changed get new ones that keep serving the held
    /// secret while it is valid (a Vault credential also keeps its login and token); changed ones
    /// are replaced (versions keep counting), added ones start, removed ones stop. A config that
    /// is invalid, or whose sources cannot be made, is rejected whole before anything changes.
    /// The file is read off the cooperative pool: a hung volume must not stall the agent's tasks.
    func reload(_ spawner: AsyncStream<CredentialRefresher>.Continuation) async {
        let new: AgentConfig
        do {
            let path = configPath
            new = try await BlockingExecutor.shared.run { try AgentConfig.load(path: path, trusting: getuid()) }
        } catch {
            logger.error("reload rejected; the running config stays", metadata: ["error": "\(error)"])
            return
        }
        let (old, oldProviders) = current.withLockedValue { ($0.config, $0.providers) }
        let newSettings = CloudProviders.Settings(aws: new.aws, azure: new.azure, gcp: new.gcp)
        let providers = newSettings == oldProviders.settings
            ? oldProviders : CloudProviders(settings: newSettings, http: http, environment: environment)
        let factory = CredentialSourceFactory(providers: providers, http: http, environment: environment, logger: logger)
        func providerChanged(_ provider: CredentialProvider) -> Bool {
            switch provider {
            case .aws: old.aws != new.aws
            case .azure: old.azure != new.azure
            case .gcp: old.gcp != new.gcp
            }
        }
        var replacements: [Replacement] = []
        var kept = 0
        do {
            for credential in new.credentials {
                let existing = refreshers[credential.name.rawValue]
                // Sinks are written from the store and proxies only use the secret: a change of
                // them alone leaves the secret be. A changed proxy still needs a new refresher,
                // which carries the held secret, for the served `proxy.listen`.
                let same = existing.flatMap { refresher -> CredentialRefresher? in
                    var unchanged = refresher.config.withSinks(credential.sinks)
                    unchanged.proxy = credential.proxy
                    return unchanged == credential ? refresher : nil
                }
                let proxyChanged = same.map { $0.config.proxy != credential.proxy } ?? false
                let changedProvider = providerChanged(credential.provider)
                if same != nil, old.refresh == new.refresh, !changedProvider, !proxyChanged {
                    kept += 1
                    continue
                }
                // Vault binds an aws_ec2 login to its nonce and the served token to its source:
                // the same Vault credential keeps its source.
                let source = try same.flatMap { $0.config.kind == .vault ? $0.source : nil } ?? factory.make(credential)
                replacements.append(Replacement(credential: credential, source: source, sameCredential: same,
                                                providerChanged: changedProvider))
            }
        } catch {
            logger.error("reload rejected; the running config stays", metadata: ["error": "\(error)"])
            return
        }
        let started = now()
        let refreshersToStart = replacements.map { replacement in
            let name = replacement.credential.name.rawValue
            let previous = store.snapshot(name)?.machine
            let held = replacement.sameCredential == nil ? nil : previous?.carriedHeld(
                policy: new.refresh.policy, refetch: replacement.providerChanged && replacement.credential.kind != .vault,
                now: started, random: Double.random(in: 0..<1))
            let refresher = CredentialRefresher(config: replacement.credential, source: replacement.source, refresh: new.refresh,
                                                store: store, metrics: metrics, logger: logger, now: now,
                                                startingVersion: previous?.generation ?? 0, carrying: held)
            return (refresher, releasingOld: replacement.sameCredential == nil)
        }
        let newNames = Set(new.credentials.map(\.name.rawValue))
        var removed = 0
        for name in old.credentials.map(\.name.rawValue) where !newNames.contains(name) {
            refreshers[name]?.stop()
            refreshers.set(nil, for: name)
            store.remove(name)
            removed += 1
        }
        for (refresher, releasingOld) in refreshersToStart {
            refreshers[refresher.config.name.rawValue]?.stop(releasingSource: releasingOld)
            refreshers.set(refresher, for: refresher.config.name.rawValue)
            spawner.yield(refresher)
        }
        context.policy = PeerPolicy(allowUIDs: new.socket.allowUIDs, allowGIDs: new.socket.allowGIDs)
        var socketAsBefore = new.socket
        socketAsBefore.allowUIDs = old.socket.allowUIDs
        socketAsBefore.allowGIDs = old.socket.allowGIDs
        if socketAsBefore != old.socket {
            logger.warning("socket settings other than socket.allow take effect only at restart")
        }
        await proxies.reload(new)
        current.withLockedValue { $0 = Current(config: new, providers: providers) }
        sinks.apply(new.credentials)
        logger.notice("config reloaded", metadata: [
            "kept": "\(kept)", "started": "\(replacements.count)", "removed": "\(removed)",
        ])
    }
}
