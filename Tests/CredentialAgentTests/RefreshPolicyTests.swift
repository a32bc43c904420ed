import CloudAuth
import Foundation
import Testing
@testable import CredentialAgent

private let standard = RefreshConfig()
private let t0 = Date(timeIntervalSince1970: 1_800_000_000)

private func credential(issued: Date = t0, lifetime: TimeInterval, refreshAfter: Date? = nil,
                        expiresByLocalClock: Bool = false) -> IssuedCredential {
    IssuedCredential(username: "kong", secret: Secret("s3cret-\(lifetime)"), issuedAt: issued,
                     expiresAt: issued.addingTimeInterval(lifetime), refreshAfter: refreshAfter,
                     expiresByLocalClock: expiresByLocalClock)
}

@Suite struct RefreshPolicyTests {
    let policy = standard.policy

    private func offsets(lifetime: TimeInterval) -> (earliest: TimeInterval, latest: TimeInterval) {
        let expires = t0.addingTimeInterval(lifetime)
        let earliest = policy.refreshPoint(issuedAt: t0, expiresAt: expires, random: 0.999_999).timeIntervalSince(t0)
        let latest = policy.refreshPoint(issuedAt: t0, expiresAt: expires, random: 0).timeIntervalSince(t0)
        return (earliest, latest)
    }

    @Test func rdsTokenRefreshesBetween504And594Seconds() {
        let (earliest, latest) = offsets(lifetime: 900)
        #expect(abs(earliest - 504) < 0.01)
        #expect(latest == 594)
    }

    @Test func oneHourTokenRefreshesBetween2016And2376Seconds() {
        let (earliest, latest) = offsets(lifetime: 3600)
        #expect(abs(earliest - 2016) < 0.01)
        #expect(abs(latest - 2376) < 0.0001)
    }

    @Test func twentySecondTokenRefreshesBetween8And10Seconds() {
        let (earliest, latest) = offsets(lifetime: 20)
        #expect(abs(earliest - 8) < 0.01)
        #expect(latest == 10)
    }

    @Test(arguments: [4.0, 20, 60, 900, 3600, 43_200, 86_400])
    func refreshComesBeforeTheServingWindowCloses(lifetime: TimeInterval) {
        let expires = t0.addingTimeInterval(lifetime)
        let servableUntil = RefreshPolicy.servableUntil(issuedAt: t0, expiresAt: expires)
        for random in stride(from: 0.0, to: 1.0, by: 0.125) {
            let point = policy.refreshPoint(issuedAt: t0, expiresAt: expires, random: random)
            #expect(point > t0)
            #expect(point <= servableUntil)
            // Jitter only ever brings the point forward, by at most jitter x lifetime.
            let latest = policy.refreshPoint(issuedAt: t0, expiresAt: expires, random: 0)
            #expect(latest.timeIntervalSince(point) <= policy.jitter * lifetime + 1e-9)
        }
    }

    @Test func aDayLongTokenRefreshesFiveMinutesBeforeExpiryAtTheLatest() {
        let (earliest, latest) = offsets(lifetime: 86_400)
        // 0.66 x 86400 = 57024 s comes before expiry - 300 s.
        #expect(abs(latest - 57_024) < 0.001)
        #expect(abs(earliest - (57_024 - 8_640)) < 0.01)
    }

    @Test func issuerRefreshHintBringsThePointForward() {
        let expires = t0.addingTimeInterval(3600)
        let hint = t0.addingTimeInterval(1800)
        #expect(policy.refreshPoint(issuedAt: t0, expiresAt: expires, refreshAfter: hint, random: 0) == hint)
        let lateHint = t0.addingTimeInterval(3000)
        #expect(policy.refreshPoint(issuedAt: t0, expiresAt: expires, refreshAfter: lateHint, random: 0)
            == t0.addingTimeInterval(2376))
    }

    @Test func servingWindowIsFifteenSecondsOrAQuarterOfTheLifetime() {
        #expect(RefreshPolicy.servingMargin(issuedAt: t0, expiresAt: t0.addingTimeInterval(900)) == 15)
        #expect(RefreshPolicy.servingMargin(issuedAt: t0, expiresAt: t0.addingTimeInterval(20)) == 5)
        #expect(RefreshPolicy.servableUntil(issuedAt: t0, expiresAt: t0.addingTimeInterval(900)) == t0.addingTimeInterval(885))
    }

    @Test func backoffGrowsExponentiallyUpToTheCap() {
        let backoff = Backoff(initial: 1, max: 60)
        #expect((1...8).map { backoff.bound(failures: $0) } == [1, 2, 4, 8, 16, 32, 60, 60])
        #expect(backoff.bound(failures: 10_000) == 60)
        // Full jitter: anywhere from zero to the bound.
        #expect(backoff.delay(failures: 4, random: 0) == 0)
        #expect(backoff.delay(failures: 4, random: 0.5) == 4)
        #expect(backoff.delay(failures: 4, random: 0.999) < 8)
    }
}

@Suite struct RefreshStateMachineTests {
    private func machine() -> RefreshStateMachine {
        RefreshStateMachine(policy: standard.policy, backoff: standard.backoff)
    }

    @Test func firstFetchMakesItValid() {
        var machine = machine()
        #expect(machine.state(at: t0) == .pending)
        #expect(machine.nextFetch(now: t0) == t0)
        machine.beginFetch(now: t0)
        #expect(machine.state(at: t0) == .pending)
        machine.fetchSucceeded(credential(lifetime: 900), now: t0, random: 0)
        #expect(machine.state(at: t0) == .valid)
        #expect(machine.generation == 1)
        #expect(machine.nextFetch(now: t0) == t0.addingTimeInterval(594))
        #expect(machine.servable(at: t0.addingTimeInterval(884)) != nil)
        #expect(machine.servable(at: t0.addingTimeInterval(885)) == nil)
    }

    @Test func failingRefreshServesTheOldSecretUntilItsWindowCloses() {
        var machine = machine()
        machine.fetchSucceeded(credential(lifetime: 900), now: t0, random: 0)
        var now = t0.addingTimeInterval(594)
        machine.beginFetch(now: now)
        #expect(machine.state(at: now) == .refreshing)
        #expect(machine.settledState(at: now) == .valid)
        machine.fetchFailed(RefreshFailure(.unavailable, "sts: unavailable"), now: now, random: 0.5)
        #expect(machine.state(at: now) == .stale)
        #expect(machine.retryAt == now.addingTimeInterval(0.5))
        #expect(machine.servable(at: now) != nil)
        // Retries back off: bounds 1, 2, 4, 8 ... seconds.
        for failures in 2...6 {
            now = machine.retryAt!
            machine.beginFetch(now: now)
            #expect(machine.settledState(at: now) == .stale)
            machine.fetchFailed(RefreshFailure(.timeout, "sts: no answer"), now: now, random: 0.5)
            #expect(machine.consecutiveFailures == failures)
            #expect(machine.retryAt == now.addingTimeInterval(standard.backoff.bound(failures: failures) * 0.5))
        }
        #expect(machine.nextWake(now: now) == machine.retryAt)
        // Past the serving window the state is expired without any event, and nothing is served.
        let late = t0.addingTimeInterval(885)
        #expect(machine.state(at: late) == .expired)
        #expect(machine.servable(at: late) == nil)
        #expect(machine.lastFailure == RefreshFailure(.timeout, "sts: no answer"))
        #expect(machine.failuresByCode == [.unavailable: 1, .timeout: 5])
        #expect(machine.generation == 1)
    }

    @Test func nextWakeIncludesTheEndOfTheServingWindow() {
        var machine = machine()
        machine.fetchSucceeded(credential(lifetime: 900), now: t0, random: 0)
        let now = t0.addingTimeInterval(880)
        for _ in 1...4 { machine.fetchFailed(RefreshFailure(.unavailable, "down"), now: now, random: 0.99) }
        #expect(machine.retryAt! > t0.addingTimeInterval(885))
        #expect(machine.nextWake(now: now) == t0.addingTimeInterval(885))
    }

    @Test func recoveryAfterExpiry() {
        var machine = machine()
        machine.fetchSucceeded(credential(lifetime: 20), now: t0, random: 0)
        machine.fetchFailed(RefreshFailure(.unavailable, "down"), now: t0.addingTimeInterval(10), random: 0)
        #expect(machine.state(at: t0.addingTimeInterval(16)) == .expired)
        let now = t0.addingTimeInterval(30)
        #expect(machine.state(at: now) == .expired)
        machine.fetchSucceeded(credential(issued: now, lifetime: 20), now: now, random: 0)
        #expect(machine.state(at: now) == .valid)
        #expect(machine.consecutiveFailures == 0)
        #expect(machine.lastFailure == nil)
        #expect(machine.retryAt == nil)
        #expect(machine.generation == 2)
    }

    @Test func neverObtainedIsFailed() {
        var machine = machine()
        machine.fetchFailed(RefreshFailure(.rejected, "no identity"), now: t0, random: 0)
        #expect(machine.state(at: t0) == .failed)
        #expect(machine.servable(at: t0) == nil)
        #expect(machine.generation == 0)
    }

    @Test func aCredentialTooShortToServeCountsAsAFailure() {
        var machine = machine()
        let stale = credential(issued: t0.addingTimeInterval(-900), lifetime: 905)
        machine.fetchSucceeded(stale, now: t0, random: 0)
        #expect(machine.state(at: t0) == .failed)
        #expect(machine.lastFailure?.code == .expired)
        #expect(machine.lastFailure?.message.contains("too soon to be served") == true)
    }

    @Test func skewedIssueTimeDoesNotCauseARefreshLoop() {
        var machine = machine()
        // Issued (by the server's clock) 10 minutes ago: the computed point is already past.
        machine.fetchSucceeded(credential(issued: t0.addingTimeInterval(-600), lifetime: 900), now: t0, random: 0)
        #expect(machine.nextFetch(now: t0) > t0)
    }

    @Test func aClockSetBackMovesALifetimeReckonedOnIt() {
        var machine = machine()
        // A 60 s `expires_in` token taken while the clock was 90 s ahead; then the clock is set right.
        let ahead = t0.addingTimeInterval(90)
        machine.fetchSucceeded(credential(issued: ahead, lifetime: 60, expiresByLocalClock: true), now: ahead, random: 0)
        machine.wallClockStepped(by: -90, now: t0)
        // Its 60 s end at t0 + 60 by the corrected clock; served until the 15 s margin before.
        #expect(machine.servable(at: t0.addingTimeInterval(44)) != nil)
        #expect(machine.servable(at: t0.addingTimeInterval(45)) == nil)
        #expect(machine.held?.credential.expiresAt == t0.addingTimeInterval(60))
        #expect(machine.nextFetch(now: t0) <= t0.addingTimeInterval(40))
    }

    @Test func aClockSetAheadKeepsALifetimeReckonedOnIt() {
        var machine = machine()
        machine.fetchSucceeded(credential(lifetime: 60, expiresByLocalClock: true), now: t0, random: 0)
        machine.fetchFailed(RefreshFailure(.unavailable, "down"), now: t0.addingTimeInterval(10), random: 0.5)
        #expect(machine.retryAt != nil)
        machine.wallClockStepped(by: 3600, now: t0.addingTimeInterval(3610))
        // An hour's step is not an hour of lifetime gone: still servable 10 s later by the new clock.
        #expect(machine.servable(at: t0.addingTimeInterval(3610)) != nil)
        // The pending retry is due at once.
        #expect(machine.nextFetch(now: t0.addingTimeInterval(3610)) <= t0.addingTimeInterval(3610))
    }

    @Test func aRetryReckonedBetweenAStepAndItsDetectionIsNotMovedTwice() {
        var machine = machine()
        machine.fetchSucceeded(credential(lifetime: 60, expiresByLocalClock: true), now: t0, random: 0)
        // The clock jumps 30 s ahead; a refresh fails on the new clock before the jump is seen.
        let ahead = t0.addingTimeInterval(40)
        machine.fetchFailed(RefreshFailure(.expired, "judged by the jumped clock"), now: ahead, random: 0.5)
        machine.wallClockStepped(by: 30, now: ahead.addingTimeInterval(0.25))
        // Set right again: the retry is due at once, not 30 s later.
        let corrected = t0.addingTimeInterval(11)
        machine.wallClockStepped(by: -29, now: corrected)
        #expect(machine.nextFetch(now: corrected) <= corrected)
    }

    @Test func aClockStepLeavesAnExpiryTheIssuerStated() {
        var machine = machine()
        // An AWS signature's expiry is an instant the issuer judges by its own clock.
        machine.fetchSucceeded(credential(lifetime: 900), now: t0, random: 0)
        machine.wallClockStepped(by: -300, now: t0)
        #expect(machine.held?.credential.expiresAt == t0.addingTimeInterval(900))
        #expect(machine.servable(at: t0.addingTimeInterval(885)) == nil)
    }

    @Test func versionCountsOnFromAReplacedCredential() {
        var machine = RefreshStateMachine(policy: standard.policy, backoff: standard.backoff, version: 7)
        machine.fetchSucceeded(credential(lifetime: 900), now: t0, random: 0)
        #expect(machine.generation == 8)
    }
}
