import AuthProxy
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

    private let requests = NIOLockedValueBox([RequestKey: CoreMetrics.Counter]())
    private struct RequestKey: Hashable {
        var route: String
        var status: Int
    }

    private let servedCounter: CoreMetrics.Counter
    /// One histogram for all credentials: a histogram per credential costs more memory than the
    /// credential itself at 10,000 credentials.
    private let refreshDuration: CoreMetrics.Timer
    private let openConnections: Meter
    private let acceptedConnections: CoreMetrics.Counter
    private let deniedPeers: CoreMetrics.Counter
    private let rejectedConnections: CoreMetrics.Counter

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
            .map { Duration.seconds($0) }
        self.factory = factory
        openConnections = Meter(label: "credagent_connections", factory: factory)
        acceptedConnections = CoreMetrics.Counter(label: "credagent_connections_accepted_total", factory: factory)
        rejectedConnections = CoreMetrics.Counter(label: "credagent_connections_rejected_total", factory: factory)
        deniedPeers = CoreMetrics.Counter(label: "credagent_denied_peers_total", factory: factory)
        refreshDuration = CoreMetrics.Timer(label: "credagent_refresh_duration_seconds", preferredDisplayUnit: .seconds,
                                            factory: factory)
        servedCounter = CoreMetrics.Counter(label: "credagent_requests_total",
                                            dimensions: [("route", "/v1/credentials/{name}"), ("status", "200")], factory: factory)
        requests.withLockedValue { $0[RequestKey(route: "/v1/credentials/{name}", status: 200)] = servedCounter }
    }

    /// The metrics of the local proxy of credential `name`, in this registry.
    public func proxy(_ name: String) -> ProxyMetrics { ProxyMetrics(proxy: name, factory: factory) }

    /// Records how long one refresh attempt took.
    public func refreshed(duration: Duration) {
        refreshDuration.recordSeconds(duration / .seconds(1))
    }

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

    /// Counts an accepted connection, open until ``connectionClosed()``.
    public func connectionOpened() {
        acceptedConnections.increment()
        openConnections.increment(by: 1)
    }

    /// One connection fewer open.
    public func connectionClosed() { openConnections.decrement(by: 1) }
    /// Counts a connection refused over the connection limit.
    public func connectionRejected() { rejectedConnections.increment() }
    /// Counts a secret request refused by `socket.allow`.
    public func peerDenied() { deniedPeers.increment() }

    /// The Prometheus text exposition: the registry's metrics, then the per-credential series read
    /// from `snapshots` at `now`.
    ///
    /// Per-credential series are rendered from the store instead of being registered: the
    /// registry copies a metric family on every new label set, which at 10,000 credentials costs
    /// seconds of CPU at startup, and the snapshots already hold every value.
    public func exposition(_ snapshots: [CredentialSnapshot], now: Date) -> [UInt8] {
        var out = registry.emitToBuffer()
        func family(_ name: String, _ type: String, _ help: String, _ value: (CredentialSnapshot) -> [(String, String)]) {
            out.append(contentsOf: "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n".utf8)
            for snapshot in snapshots {
                for (labels, number) in value(snapshot) {
                    out.append(contentsOf: "\(name){credential=\"\(snapshot.name)\"\(labels)} \(number)\n".utf8)
                }
            }
        }
        family("credagent_refresh_total", "counter", "Refresh attempts by result.") { snapshot in
            [(",result=\"success\"", String(snapshot.machine.successes)),
             (",result=\"failure\"", String(snapshot.machine.failures))]
        }
        family("credagent_refresh_failures_total", "counter", "Failed refresh attempts by reason (docs/API.md, Failure codes).") { snapshot in
            // A closed set of labels, in a stable order; only reasons that occurred.
            RefreshFailure.Code.all.compactMap { code in
                snapshot.machine.failuresByCode[code].map { (",reason=\"\(code)\"", String($0)) }
            }
        }
        family("credagent_expiry_timestamp_seconds", "gauge", "When the served secret expires (0: none).") { snapshot in
            [("", String(snapshot.machine.held.map { Int($0.credential.expiresAt.timeIntervalSince1970) } ?? 0))]
        }
        family("credagent_last_success_timestamp_seconds", "gauge", "When the last refresh succeeded (0: never).") { snapshot in
            [("", String(snapshot.machine.lastSuccessAt.map { Int($0.timeIntervalSince1970) } ?? 0))]
        }
        out.append(contentsOf: """
            # HELP credagent_log_lines_dropped_total Log lines dropped because standard error was too slow.
            # TYPE credagent_log_lines_dropped_total counter
            credagent_log_lines_dropped_total \(LogWriter.standardError.dropped)

            """.utf8)
        family("credagent_serving_stale", "gauge", "1 while a secret is served whose refresh keeps failing.") { snapshot in
            [("", snapshot.state(at: now) == .stale ? "1" : "0")]
        }
        return out
    }
}
