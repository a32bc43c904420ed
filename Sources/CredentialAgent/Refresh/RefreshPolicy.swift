import Foundation

/// When to renew a credential and how long it may be served (docs/CONFIG.md, "refresh"). Pure: times and
/// randomness are passed in.
public struct RefreshPolicy: Sendable, Equatable {
    public var minRemaining: TimeInterval
    public var lifetimeFraction: Double
    public var jitter: Double
    /// A refresh asked for by a client (`POST .../refresh`, `min_valid`) is not started within
    /// this many seconds of the last new secret: the held one answers, so that a client in a loop
    /// cannot turn every request into a call upstream.
    public var clientMinInterval: TimeInterval

    public init(minRemaining: TimeInterval, lifetimeFraction: Double, jitter: Double, clientMinInterval: TimeInterval = 5) {
        self.minRemaining = minRemaining
        self.lifetimeFraction = lifetimeFraction
        self.jitter = jitter
        self.clientMinInterval = clientMinInterval
    }

    /// The refresh point of a credential valid from `issuedAt` to `expiresAt`:
    /// `min(issued + fraction x lifetime, expires - min(min_remaining, lifetime / 2)) - U(0, jitter x lifetime)`,
    /// brought forward to `refreshAfter` when the issuer asks for that. `random` is in `0..<1`.
    public func refreshPoint(issuedAt: Date, expiresAt: Date, refreshAfter: Date? = nil, random: Double) -> Date {
        let lifetime = max(0, expiresAt.timeIntervalSince(issuedAt))
        let lead = min(minRemaining, lifetime / 2)
        let base = min(issuedAt.addingTimeInterval(lifetimeFraction * lifetime), expiresAt.addingTimeInterval(-lead))
        let point = base.addingTimeInterval(-random * jitter * lifetime)
        guard let refreshAfter, refreshAfter > issuedAt else { return point }
        return min(point, refreshAfter)
    }

    /// How long before expiry a credential stops being served: `min(15 s, lifetime / 4)`.
    public static func servingMargin(issuedAt: Date, expiresAt: Date) -> TimeInterval {
        min(15, max(0, expiresAt.timeIntervalSince(issuedAt)) / 4)
    }

    /// The last instant a credential may be handed out.
    public static func servableUntil(issuedAt: Date, expiresAt: Date) -> Date {
        expiresAt.addingTimeInterval(-servingMargin(issuedAt: issuedAt, expiresAt: expiresAt))
    }
}

/// Retry delays after failures: exponential growth, capped, with full jitter (a uniformly random
/// delay between zero and the exponential bound). Pure: randomness is passed in.
public struct Backoff: Sendable, Equatable {
    public var initial: TimeInterval
    public var max: TimeInterval

    public init(initial: TimeInterval, max: TimeInterval) {
        self.initial = initial
        self.max = max
    }

    /// The upper bound of the delay after `failures` consecutive failures (1 = the first).
    public func bound(failures: Int) -> TimeInterval {
        let exponent = Swift.min(Swift.max(failures - 1, 0), 62)
        return Swift.min(max, initial * pow(2, Double(exponent)))
    }

    /// The delay to wait after `failures` consecutive failures; `random` is in `0..<1`.
    public func delay(failures: Int, random: Double) -> TimeInterval {
        random * bound(failures: failures)
    }
}
