import CoreMetrics
import NIOConcurrencyHelpers

/// One proxy's metrics, labelled `proxy=<credential name>`: connections open, accepted and
/// rejected by reason, upstream connect latency, bytes each way and authentication failures.
/// Made from the agent's metrics factory, so they appear on its `/metrics`.
public final class ProxyMetrics: Sendable {
    private let proxy: String
    private let factory: any MetricsFactory
    private let open: Meter
    private let accepted: CoreMetrics.Counter
    private let upstreamConnect: CoreMetrics.Timer
    private let clientToServer: CoreMetrics.Counter
    private let serverToClient: CoreMetrics.Counter
    private let authFailures: CoreMetrics.Counter
    private let reauths: CoreMetrics.Counter
    private let forcedReconnects: CoreMetrics.Counter
    private let rejected = NIOLockedValueBox([String: CoreMetrics.Counter]())

    public init(proxy: String, factory: any MetricsFactory) {
        self.proxy = proxy
        self.factory = factory
        let label = [("proxy", proxy)]
        open = Meter(label: "credagent_proxy_connections", dimensions: label, factory: factory)
        accepted = CoreMetrics.Counter(label: "credagent_proxy_connections_total", dimensions: label, factory: factory)
        upstreamConnect = CoreMetrics.Timer(label: "credagent_proxy_upstream_connect_seconds", dimensions: label,
                                            preferredDisplayUnit: .seconds, factory: factory)
        clientToServer = CoreMetrics.Counter(label: "credagent_proxy_bytes_total",
                                             dimensions: label + [("direction", "client_to_server")], factory: factory)
        serverToClient = CoreMetrics.Counter(label: "credagent_proxy_bytes_total",
                                             dimensions: label + [("direction", "server_to_client")], factory: factory)
        authFailures = CoreMetrics.Counter(label: "credagent_proxy_auth_failures_total", dimensions: label, factory: factory)
        reauths = CoreMetrics.Counter(label: "credagent_proxy_reauths_total", dimensions: label, factory: factory)
        forcedReconnects = CoreMetrics.Counter(label: "credagent_proxy_forced_reconnects_total", dimensions: label, factory: factory)
    }

    func connectionOpened() {
        accepted.increment()
        open.increment(by: 1)
    }

    func connectionClosed() { open.decrement(by: 1) }

    func rejected(_ refusal: ProxyRefusal) {
        rejected(reason: refusal.metricReason)
        if case .tokenRejected = refusal { authFailures.increment() }
        if case .upstreamProtocol = refusal { authFailures.increment() }
    }

    /// A refusal counted under `reason` (a proxy's own reasons besides ``ProxyRefusal``'s).
    func rejected(reason: String) {
        let counter = rejected.withLockedValue { counters in
            if let counter = counters[reason] { return counter }
            let counter = CoreMetrics.Counter(label: "credagent_proxy_connections_rejected_total",
                                              dimensions: [("proxy", proxy), ("reason", reason)], factory: factory)
            counters[reason] = counter
            return counter
        }
        counter.increment()
    }

    func upstreamConnected(after duration: Duration) {
        upstreamConnect.recordNanoseconds(Int64(duration / .nanoseconds(1)))
    }

    /// An open session authenticated again with a fresh token.
    func reauthenticated() { reauths.increment() }
    /// An open session re-authenticated unsuccessfully (the server refused the token).
    func reauthFailed() { authFailures.increment() }
    /// An open session closed at a reply boundary because it could not re-authenticate in place.
    func forcedReconnect() { forcedReconnects.increment() }

    func relayed(clientToServer bytes: Int) { clientToServer.increment(by: Int64(bytes)) }
    func relayed(serverToClient bytes: Int) { serverToClient.increment(by: Int64(bytes)) }
}
