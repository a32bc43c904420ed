import CloudAuth
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Synchronization

/// Limits that keep one slow or malicious client from costing the others.
public struct ServerLimits: Sendable, Equatable {
    /// Request line and header fields together; more is answered 431.
    public var maxHeaderBytes = 8 * 1024
    /// Header fields of one request; more is answered 431.
    public var maxHeaderFields = 100
    /// Request bodies (no route takes one); more is answered 413.
    public var maxBodyBytes = 4 * 1024
    /// Bytes of requests that may wait behind an answer or behind output the peer does not read;
    /// more closes the connection.
    public var maxQueuedBytes = 64 * 1024
    /// Output a connection may have unsent before it is no longer read from (the channel's high
    /// water mark); below half of it, reading resumes.
    public var maxUnsentBytes = 64 * 1024
    /// A connection that sent no bytes for this long is closed, unless it waits for an answer or
    /// is in the middle of sending a request. One that cannot be read from because its peer does
    /// not read what it was sent is closed after this long too.
    public var idleTimeout: TimeAmount
    /// A request not complete (head and body) this long after its first byte is answered 408.
    public var requestTimeout: TimeAmount
    public var maxConnections: Int
    /// Connections of peers that may not read secrets; never all of ``maxConnections``.
    public var maxForeignConnections: Int

    /// The limits the `socket:` section sets, with the fixed header and body caps.
    public init(socket: SocketConfig = SocketConfig()) {
        idleTimeout = TimeAmount(socket.idleTimeout)
        requestTimeout = TimeAmount(socket.requestTimeout)
        maxConnections = socket.maxConnections
        maxForeignConnections = min(socket.maxForeignConnections, socket.maxConnections - 1)
    }

    /// The decoder's own limits on a request head.
    var decoderLimits: NIOHTTPDecoderLimitConfiguration {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = maxHeaderBytes
        limits.maxHeaderFieldSize = maxHeaderBytes
        limits.maxHeaderFieldCount = maxHeaderFields
        return limits
    }

    /// The bounds a connection's state machine enforces.
    var connectionLimits: ConnectionStateMachine.Limits {
        .init(maxBodyBytes: maxBodyBytes, maxQueuedBytes: maxQueuedBytes, requestTimeout: requestTimeout)
    }
}

/// What every connection shares: the store, the refreshers, who may read secrets, telemetry.
public final class ServerContext: Sendable {
    let store: CredentialStore
    let refreshers: RefresherDirectory
    let metrics: AgentMetrics
    let logger: Logger
    let limits: ServerLimits
    let now: @Sendable () -> Date
    private let policyBox: NIOLockedValueBox<PeerPolicy>
    /// Increases with every policy change, so that connections can cache their verdict.
    private let policyGeneration = Atomic<Int>(0)
    private let denialLog = NIOLockedValueBox(DenialLogLimiter())

    public init(store: CredentialStore, refreshers: RefresherDirectory, metrics: AgentMetrics, policy: PeerPolicy,
                limits: ServerLimits = ServerLimits(), logger: Logger, now: @escaping @Sendable () -> Date = Date.init) {
        self.store = store
        self.refreshers = refreshers
        self.metrics = metrics
        self.logger = logger
        self.limits = limits
        self.now = now
        self.policyBox = NIOLockedValueBox(policy)
    }

    /// Who may read secrets; replaced on reload. A new policy applies to the next request of
    /// every connection and to long polls already waiting (each checks its peer again).
    public var policy: PeerPolicy {
        get { policyBox.withLockedValue { $0 } }
        set {
            policyBox.withLockedValue { $0 = newValue }
            policyGeneration.add(1, ordering: .releasing)
            store.recheckWaiters()
        }
    }

    var currentPolicyGeneration: Int { policyGeneration.load(ordering: .acquiring) }

    /// Counts a refused secret request of `peer` and logs it, at most once per second per uid,
    /// with how many refusals of that uid were not logged since the previous line.
    func peerDenied(_ peer: UnixPeerCredentials?) {
        metrics.peerDenied()
        let uid = peer?.uid
        guard let unlogged = denialLog.withLockedValue({ $0.record(uid: uid, at: .now()) }) else { return }
        logger.warning("peer not allowed to read secrets", metadata: [
            "peer.uid": "\(uid.map { String($0) } ?? "unknown")",
            "peer.gid": "\(peer.map { String($0.gid) } ?? "unknown")",
            "peer.pid": "\(peer.map { String($0.pid) } ?? "unknown")",
            "peer.denials_not_logged": "\(unlogged)",
        ])
    }
}

/// Which refusals of peers are logged: at most one line per uid per interval, so that a peer
/// that reconnects in a loop cannot flood the log; each line says how many of that uid's refusals
/// went unlogged since the previous one. Pure; time is passed in.
struct DenialLogLimiter {
    let interval: TimeAmount
    /// Uids remembered at most; older entries are forgotten when more arrive.
    let capacity: Int
    private var lastLine: [UInt32?: (at: NIODeadline, unlogged: Int)] = [:]

    /// Uids remembered now.
    var trackedUIDs: Int { lastLine.count }

    init(interval: TimeAmount = .seconds(1), capacity: Int = 1024) {
        self.interval = interval
        self.capacity = capacity
    }

    /// Records a refusal of `uid` at `now`: nil when it is not to be logged, else the number of
    /// refusals of that uid not logged since its previous line.
    mutating func record(uid: UInt32?, at now: NIODeadline) -> Int? {
        if let last = lastLine[uid], now - last.at < interval {
            lastLine[uid] = (last.at, last.unlogged + 1)
            return nil
        }
        if lastLine[uid] == nil, lastLine.count >= capacity {
            lastLine = lastLine.filter { now - $0.value.at < interval }
        }
        let unlogged = lastLine[uid]?.unlogged ?? 0
        lastLine[uid] = (now, 0)
        return unlogged
    }
}
