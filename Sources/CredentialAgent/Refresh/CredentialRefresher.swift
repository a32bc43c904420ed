import CloudAuth
import CredentialModel
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Keeps one credential fresh: fetches it when due, retries with backoff, publishes every change
/// to the store, and lets clients force a refresh that concurrent callers share.
///
/// ``run()`` is the credential's loop; the agent runs it in its task group and cancels it when
/// the credential is removed or the agent stops. Timing comes from the injected wall clock: the
/// loop sleeps at most `maxNap` between looks, and ``wallClockStepped(by:)`` (the agent calls it
/// when the wall clock is stepped) moves the times reckoned on that clock and looks at once.
public final class CredentialRefresher: Sendable {
    public let config: CredentialConfig
    let source: any CredentialSource
    private let store: CredentialStore
    private let metrics: AgentMetrics
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let random: @Sendable () -> Double
    private let maxNap: TimeInterval
    private let signal = WakeSignal()

    private struct Inner {
        var machine: RefreshStateMachine
        var loggedState: CredentialState = .pending
        var forceRequested = false
        var waiters: [Int: CheckedContinuation<Result<CredentialSnapshot, RefreshFailure>, Never>] = [:]
        var nextWaiterID = 0
        var stopped = false
        var stopRequested = false
        var releaseSourceOnStop = true
    }
    private let inner: NIOLockedValueBox<Inner>

    public init(config: CredentialConfig, source: any CredentialSource, refresh: RefreshConfig, store: CredentialStore,
                metrics: AgentMetrics, logger: Logger, now: @escaping @Sendable () -> Date = Date.init,
                random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }, maxNap: TimeInterval = 60,
                startingVersion: Int = 0, carrying held: RefreshStateMachine.Held? = nil) {
        self.config = config
        self.source = source
        self.store = store
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "credential"] = "\(config.name)"
        self.logger = logger
        self.now = now
        self.random = random
        self.maxNap = maxNap
        let machine = RefreshStateMachine(policy: refresh.policy, backoff: refresh.backoff, version: startingVersion, held: held)
        // A carried secret is not news: log only changes from the state it is in.
        self.inner = NIOLockedValueBox(Inner(machine: machine, loggedState: machine.settledState(at: now())))
        store.register(config, machine, owner: ObjectIdentifier(self))
    }

    /// Follows a step of the wall clock by `seconds` (see ``RefreshStateMachine/wallClockStepped(by:now:)``),
    /// publishes the moved times and looks at the clock at once.
    public func wallClockStepped(by seconds: TimeInterval) {
        let machine = inner.withLockedValue { inner in
            inner.machine.wallClockStepped(by: seconds, now: now())
            return inner.machine
        }
        publish(machine)
        signal.fire()
    }

    /// Ends ``run()`` (the credential was removed or replaced by a reload). With
    /// `releasingSource` false the source is left as it is: its successor serves what it holds.
    public func stop(releasingSource: Bool = true) {
        inner.withLockedValue { inner in
            inner.stopRequested = true
            inner.releaseSourceOnStop = releasingSource
        }
        signal.fire()
    }

    private func publish(_ machine: RefreshStateMachine) {
        store.publish(config, machine, owner: ObjectIdentifier(self))
    }

    /// Fetches and refreshes until cancelled, then fails any waiting clients and shuts the source
    /// down (a Vault source revokes its token).
    public func run() async {
        while !Task.isCancelled, !inner.withLockedValue({ $0.stopRequested }) {
            let current = now()
            let (due, wakeAt) = inner.withLockedValue { inner in
                (inner.forceRequested || inner.machine.nextFetch(now: current) <= current, inner.machine.nextWake(now: current))
            }
            if due {
                // In a child task: a task keeps the memory of its deepest frames until it ends,
                // and a refresh goes deep (HTTP, signing). The long-lived loop task stays shallow,
                // which saves several KiB per credential.
                await withDiscardingTaskGroup { group in
                    group.addTask { await self.refreshOnce() }
                }
                continue
            }
            noteStateChange(at: current)
            let nap = min(max(wakeAt.timeIntervalSince(current), 0.001), maxNap)
            await signal.wait(for: .seconds(nap))
        }
        let (waiters, release) = inner.withLockedValue { inner in
            inner.stopped = true
            defer { inner.waiters.removeAll() }
            return (Array(inner.waiters.values), inner.releaseSourceOnStop)
        }
        for waiter in waiters { waiter.resume(returning: .failure(.removedWhileWaiting)) }
        // The agent stops its refreshers by cancelling them; the release (a revocation request)
        // must still go out, so it runs in a task that does not inherit the cancellation.
        if release { await Task { [source] in await source.shutdown() }.value }
    }

    private func refreshOnce() async {
        let started = now()
        let beginning = inner.withLockedValue { inner in
            inner.forceRequested = false
            inner.machine.beginFetch(now: started)
            return inner.machine
        }
        publish(beginning)
        let clock = ContinuousClock()
        let start = clock.now
        let result: Result<IssuedCredential, any Error>
        do {
            result = .success(try await source.fetch(now: started))
        } catch {
            result = .failure(error)
        }
        let elapsed = clock.now - start
        let finished = now()
        let jitter = random()
        let (machine, waiters) = inner.withLockedValue { inner in
            switch result {
            case let .success(credential): inner.machine.fetchSucceeded(credential, now: finished, random: jitter)
            case let .failure(error): inner.machine.fetchFailed(RefreshFailure(error), now: finished, random: jitter)
            }
            defer { inner.waiters.removeAll() }
            return (inner.machine, Array(inner.waiters.values))
        }
        publish(machine)
        metrics.refreshed(duration: elapsed)
        if machine.lastFailure == nil {
            logger.debug("refreshed", metadata: [
                "version": "\(machine.generation)",
                "expires_at": "\(Timestamp.format(machine.held?.credential.expiresAt ?? finished))",
                "refresh_at": "\(Timestamp.format(machine.held?.refreshAt ?? finished))",
            ])
        }
        noteStateChange(at: finished)
        let answer: Result<CredentialSnapshot, RefreshFailure>
        if let failure = machine.lastFailure {
            answer = .failure(failure)
        } else if let snapshot = store.snapshot(config.name.rawValue) {
            answer = .success(snapshot)
        } else {
            answer = .failure(.removedWhileWaiting)
        }
        for waiter in waiters { waiter.resume(returning: answer) }
    }

    /// Logs the settled state once each time it changes, with the cause of a failure.
    private func noteStateChange(at time: Date) {
        let change: (from: CredentialState, to: CredentialState, machine: RefreshStateMachine)? = inner.withLockedValue { inner in
            let settled = inner.machine.settledState(at: time)
            guard settled != inner.loggedState else { return nil }
            defer { inner.loggedState = settled }
            return (inner.loggedState, settled, inner.machine)
        }
        guard let change else { return }
        var metadata: Logger.Metadata = ["from": "\(change.from.rawValue)", "to": "\(change.to.rawValue)"]
        if let failure = change.machine.lastFailure {
            metadata["error"] = "\(failure.message)"
            metadata["error_code"] = "\(failure.code)"
        }
        if let retry = change.machine.retryAt { metadata["retry_at"] = "\(Timestamp.format(retry))" }
        if let held = change.machine.held {
            metadata["expires_at"] = "\(Timestamp.format(held.credential.expiresAt))"
        }
        switch change.to {
        case .valid where change.from == .pending: logger.info("credential obtained", metadata: metadata)
        case .valid: logger.info("credential recovered", metadata: metadata)
        case .stale: logger.warning("refresh failing, serving the current credential while it is valid", metadata: metadata)
        case .expired: logger.error("credential expired and refresh is failing", metadata: metadata)
        case .failed: logger.error("cannot obtain credential", metadata: metadata)
        case .pending, .refreshing: logger.debug("state changed", metadata: metadata)
        }
    }

    /// A credential that will be servable for at least `minValid` seconds (capped at half its
    /// lifetime): the current one when it qualifies (see
    /// ``RefreshStateMachine/answersClient(minValid:force:at:)``), else the result of a refresh
    /// shared with every other caller waiting at the same time.
    public func credential(minValid: TimeInterval = 0, force: Bool = false) async -> Result<CredentialSnapshot, RefreshFailure> {
        let current = now()
        if let snapshot = store.snapshot(config.name.rawValue), snapshot.machine.answersClient(minValid: minValid, force: force, at: current) {
            return .success(snapshot)
        }
        // Waiters are always answered: by the refresh they joined, or by `run()` ending.
        return await withCheckedContinuation { continuation in
                let refused: RefreshFailure? = inner.withLockedValue { inner in
                    if inner.stopped { return .removedWhileWaiting }
                    // A failure a moment ago answers for itself instead of hammering the endpoint.
                    if inner.machine.consecutiveFailures > 0, !inner.machine.fetching, let last = inner.machine.lastAttemptAt,
                       current.timeIntervalSince(last) < inner.machine.backoff.initial, let failure = inner.machine.lastFailure {
                        return failure
                    }
                    inner.waiters[inner.nextWaiterID] = continuation
                    inner.nextWaiterID += 1
                    inner.forceRequested = true
                    return nil
                }
                if let refused {
                    continuation.resume(returning: .failure(refused))
                } else {
                    signal.fire()
                }
        }
    }
}
