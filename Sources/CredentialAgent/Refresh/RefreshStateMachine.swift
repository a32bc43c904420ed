import CloudAuth
import Foundation

/// Where a credential stands (docs/API.md, States).
public enum CredentialState: String, Sendable, CaseIterable {
    /// Nothing obtained yet, first attempt not failed.
    case pending
    /// A servable secret, no refresh in progress or failing.
    case valid
    /// A servable secret while a refresh is in flight.
    case refreshing
    /// A servable secret, but the last refresh failed.
    case stale
    /// The last secret is past its serving window and refreshing keeps failing.
    case expired
    /// Never obtained: every attempt so far failed.
    case failed
}

/// The refresh bookkeeping of one credential, as a plain value: the held secret and its refresh
/// point, whether a fetch is in flight, consecutive failures and when to retry.
///
/// Pure: every method takes the current time, and randomness (for jitter) is passed in as a
/// number in `0..<1`. ``CredentialRefresher`` drives it with real time and real fetches.
public struct RefreshStateMachine: Sendable {
    /// The secret currently handed out and its schedule.
    public struct Held: Sendable {
        public var credential: IssuedCredential
        public var refreshAt: Date
        public var servableUntil: Date
    }

    public let policy: RefreshPolicy
    public let backoff: Backoff
    public private(set) var held: Held?
    public private(set) var fetching = false
    public private(set) var consecutiveFailures = 0
    /// Why the last attempt failed; cleared by a success.
    public private(set) var lastFailure: RefreshFailure?
    /// When a failed refresh is retried.
    public private(set) var retryAt: Date?
    /// When the last attempt, successful or not, ended.
    public private(set) var lastAttemptAt: Date?
    public private(set) var lastSuccessAt: Date?
    /// Refresh attempts that succeeded and failed, for metrics.
    public private(set) var successes = 0
    public private(set) var failures = 0
    /// Failed attempts by code, for metrics; only codes that occurred are present.
    public private(set) var failuresByCode: [RefreshFailure.Code: Int] = [:]
    /// How many credentials have been taken so far: the version the socket API reports.
    public private(set) var generation = 0

    /// - Parameter version: the version to count on from; a credential replaced by a reload keeps
    ///   counting where its predecessor stopped, so that clients never see a version go back.
    /// - Parameter held: a secret carried over from the machine this one replaces (the same
    ///   credential under new refresh or provider settings); it is served while valid.
    public init(policy: RefreshPolicy, backoff: Backoff, version: Int = 0, held: Held? = nil) {
        self.policy = policy
        self.backoff = backoff
        self.generation = version
        self.held = held
    }

    /// The held secret as a machine under `policy` takes it over: refreshed at once when
    /// `refetch` (the identity that obtained it changed), else at `policy`'s refresh point.
    public func carriedHeld(policy: RefreshPolicy, refetch: Bool, now: Date, random: Double) -> Held? {
        guard var held else { return nil }
        let credential = held.credential
        let point = policy.refreshPoint(issuedAt: credential.issuedAt, expiresAt: credential.expiresAt,
                                        refreshAfter: credential.refreshAfter, random: random)
        held.refreshAt = refetch ? now : min(max(point, now), held.servableUntil)
        return held
    }

    /// The held secret if it may still be handed out at `now`.
    public func servable(at now: Date) -> Held? {
        guard let held, now < held.servableUntil else { return nil }
        return held
    }

    /// Whether the held secret answers a client at `now` without a refresh: it must be servable,
    /// and then it does when it was obtained less than the policy's
    /// ``RefreshPolicy/clientMinInterval`` ago, or (unless `force`) when it stays servable for
    /// `minValid` seconds. `minValid` is capped at half the
    /// credential's lifetime, which a fresh credential always satisfies.
    public func answersClient(minValid: TimeInterval, force: Bool, at now: Date) -> Bool {
        guard let held = servable(at: now) else { return false }
        if let lastSuccessAt, now.timeIntervalSince(lastSuccessAt) < policy.clientMinInterval { return true }
        if force { return false }
        let lifetime = held.credential.expiresAt.timeIntervalSince(held.credential.issuedAt)
        return held.servableUntil.timeIntervalSince(now) >= min(minValid, lifetime / 2)
    }

    public func state(at now: Date) -> CredentialState {
        if servable(at: now) != nil {
            if fetching { return .refreshing }
            return consecutiveFailures > 0 ? .stale : .valid
        }
        if held != nil { return .expired }
        return consecutiveFailures > 0 ? .failed : .pending
    }

    /// The state leaving out an attempt in flight (`refreshing` reads as `valid` or `stale`), for
    /// logging a change once rather than at every retry.
    public func settledState(at now: Date) -> CredentialState {
        let current = state(at: now)
        guard current == .refreshing else { return current }
        return consecutiveFailures > 0 ? .stale : .valid
    }

    /// When the next fetch is due: at once without a secret, at the retry time after a failure,
    /// else at the refresh point.
    public func nextFetch(now: Date) -> Date {
        if let retryAt { return retryAt }
        guard let held else { return now }
        return held.refreshAt
    }

    /// When the driver should look again even without a fetch due: the next fetch, or the end of
    /// the serving window if that comes first (the state then changes without any event).
    public func nextWake(now: Date) -> Date {
        var wake = nextFetch(now: now)
        if let held, held.servableUntil > now { wake = min(wake, held.servableUntil) }
        return wake
    }

    public mutating func beginFetch(now: Date) {
        fetching = true
    }

    /// Takes a new credential. One that would not be servable at all counts as a failure.
    public mutating func fetchSucceeded(_ credential: IssuedCredential, now: Date, random: Double) {
        let servableUntil = RefreshPolicy.servableUntil(issuedAt: credential.issuedAt, expiresAt: credential.expiresAt)
        guard servableUntil > now else {
            let expires = Timestamp.format(credential.expiresAt)
            return fetchFailed(RefreshFailure(.expired, "the issued credential expires at \(expires), too soon to be served"),
                               now: now, random: random)
        }
        var refreshAt = policy.refreshPoint(issuedAt: credential.issuedAt, expiresAt: credential.expiresAt,
                                            refreshAfter: credential.refreshAfter, random: random)
        // An issue time far in the past (clock skew) must not cause a refresh loop.
        refreshAt = min(max(refreshAt, now.addingTimeInterval(min(1, servableUntil.timeIntervalSince(now) / 2))), servableUntil)
        held = Held(credential: credential, refreshAt: refreshAt, servableUntil: servableUntil)
        fetching = false
        consecutiveFailures = 0
        lastFailure = nil
        retryAt = nil
        lastAttemptAt = now
        lastSuccessAt = now
        generation += 1
        successes += 1
    }

    /// Follows a step of the wall clock by `seconds` (negative when it was set back): every instant
    /// this machine reckoned on that clock moves with it, so that a lifetime keeps its true length.
    /// Those are the attempt times, and a held secret's times when its issuer stated a lifetime
    /// rather than an instant (``IssuedCredential/expiresByLocalClock``). An expiry the issuer
    /// stated as an instant stays where it is. A pending retry is due at once (`now`, by the new
    /// clock): it may have been reckoned after the step but before the step was seen, so moving it
    /// could count the step twice, and a failure under a wrong clock is worth trying again.
    public mutating func wallClockStepped(by seconds: TimeInterval, now: Date) {
        if retryAt != nil { retryAt = now }
        lastAttemptAt = lastAttemptAt?.addingTimeInterval(seconds)
        lastSuccessAt = lastSuccessAt?.addingTimeInterval(seconds)
        guard var moved = held, moved.credential.expiresByLocalClock else { return }
        moved.credential.issuedAt.addTimeInterval(seconds)
        moved.credential.expiresAt.addTimeInterval(seconds)
        moved.credential.refreshAfter?.addTimeInterval(seconds)
        moved.refreshAt.addTimeInterval(seconds)
        moved.servableUntil.addTimeInterval(seconds)
        held = moved
    }

    /// Records a failed attempt and schedules the retry with backoff.
    public mutating func fetchFailed(_ failure: RefreshFailure, now: Date, random: Double) {
        fetching = false
        consecutiveFailures += 1
        failures += 1
        failuresByCode[failure.code, default: 0] += 1
        lastFailure = failure
        lastAttemptAt = now
        retryAt = now.addingTimeInterval(backoff.delay(failures: consecutiveFailures, random: random))
    }
}
