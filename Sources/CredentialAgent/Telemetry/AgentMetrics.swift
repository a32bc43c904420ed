import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// The agent's metrics, exported in Prometheus text format on `GET /metrics`.
///
/// Created with their own registry and factory rather than a global bootstrap, so that several
/// agents (tests) can live in one process. Labels are configured credential names, route
/// templates and status codes only: never anything derived from a token.
public final class AgentMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    private struct PerCredential {
        var expiry: CoreMetrics.Gauge
        var lastSuccess: CoreMetrics.Gauge
        var servingStale: CoreMetrics.Gauge
        var refreshSuccess: CoreMetrics.Counter
        var refreshFailure: CoreMetrics.Counter
        var refreshDuration: CoreMetrics.Timer
    }
    private let credentials = NIOLockedValueBox([String: PerCredential]())
    private let requests = NIOLockedValueBox([RequestKey: CoreMetrics.Counter]())
    private struct RequestKey: Hashable {
        var route: String
        var status: Int
    }

    private let servedCounter: CoreMetrics.Counter
    private let openConnections: Meter
    private let acceptedConnections: CoreMetrics.Counter
    private let deniedPeers: CoreMetrics.Counter
    private let rejectedConnections: CoreMetrics.Counter

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
            .map { Duration.milliseconds(Int64($0 * 1000)) }
        self.factory = factory
        openConnections = Meter(label: "credagent_connections", factory: factory)
        acceptedConnections = CoreMetrics.Counter(label: "credagent_connections_accepted_total", factory: factory)
        rejectedConnections = CoreMetrics.Counter(label: "credagent_connections_rejected_total", factory: factory)
        deniedPeers = CoreMetrics.Counter(label: "credagent_denied_peers_total", factory: factory)
        servedCounter = CoreMetrics.Counter(label: "credagent_requests_total",
                                            dimensions: [("route", "/v1/credentials/{name}"), ("status", "200")], factory: factory)
        requests.withLockedValue { $0[RequestKey(route: "/v1/credentials/{name}", status: 200)] = servedCounter }
    }

    private func perCredential(_ name: String) -> PerCredential {
        credentials.withLockedValue { all in
            if let existing = all[name] { return existing }
            let labels = [("credential", name)]
            let made = PerCredential(
                expiry: CoreMetrics.Gauge(label: "credagent_expiry_timestamp_seconds", dimensions: labels, factory: factory),
                lastSuccess: CoreMetrics.Gauge(label: "credagent_last_success_timestamp_seconds", dimensions: labels, factory: factory),
                servingStale: CoreMetrics.Gauge(label: "credagent_serving_stale", dimensions: labels, factory: factory),
                refreshSuccess: CoreMetrics.Counter(label: "credagent_refresh_total",
                                                    dimensions: labels + [("result", "success")], factory: factory),
                refreshFailure: CoreMetrics.Counter(label: "credagent_refresh_total",
                                                    dimensions: labels + [("result", "failure")], factory: factory),
                refreshDuration: CoreMetrics.Timer(label: "credagent_refresh_duration_seconds", dimensions: labels,
                                                   preferredDisplayUnit: .seconds, factory: factory))
            all[name] = made
            return made
        }
    }

    /// Records one refresh attempt of `name` and how long it took.
    public func refreshed(_ name: String, success: Bool, duration: Duration) {
        let metrics = perCredential(name)
        (success ? metrics.refreshSuccess : metrics.refreshFailure).increment()
        let (seconds, attoseconds) = duration.components
        metrics.refreshDuration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Sets the per-credential gauges from its bookkeeping at `now`.
    public func update(_ name: String, _ machine: RefreshStateMachine, now: Date) {
        let metrics = perCredential(name)
        metrics.expiry.record(machine.held?.credential.expiresAt.timeIntervalSince1970 ?? 0)
        metrics.lastSuccess.record(machine.lastSuccessAt?.timeIntervalSince1970 ?? 0)
        metrics.servingStale.record(machine.state(at: now) == .stale ? 1 : 0)
    }

    /// Drops the series of a credential that was removed from the config.
    public func remove(_ name: String) {
        guard let metrics = credentials.withLockedValue({ $0.removeValue(forKey: name) }) else { return }
        metrics.expiry.destroy()
        metrics.lastSuccess.destroy()
        metrics.servingStale.destroy()
        metrics.refreshSuccess.destroy()
        metrics.refreshFailure.destroy()
        metrics.refreshDuration.destroy()
    }

    /// `GET /v1/credentials/{name}` answered 200: the hot path, counted without a lookup.
    /// Counts one answered request by route template (`/v1/credentials/{name}`) and status.
    public func request(route: String, status: Int) {
        requestCounter(route: route, status: status).increment()
    }

    /// Counts one credential served.
    public func credentialServed() { servedCounter.increment() }

    private func requestCounter(route: String, status: Int) -> CoreMetrics.Counter {
        let key = RequestKey(route: route, status: status)
        let counter = requests.withLockedValue { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(label: "credagent_requests_total",
                                              dimensions: [("route", route), ("status", String(status))], factory: factory)
            counters[key] = counter
            return counter
        }
        return counter
    }

    public func connectionOpened() {
        acceptedConnections.increment()
        openConnections.increment(by: 1)
    }

    public func connectionClosed() { openConnections.decrement(by: 1) }
    public func connectionRejected() { rejectedConnections.increment() }
    public func peerDenied() { deniedPeers.increment() }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
