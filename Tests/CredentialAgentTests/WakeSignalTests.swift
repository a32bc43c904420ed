import Testing
@testable import CredentialAgent

@Suite(.timeLimit(.minutes(1))) struct WakeSignalTests {
    @Test func aFireWithNobodyWaitingEndsTheNextWaitAtOnce() async {
        let signal = WakeSignal()
        signal.fire()
        await signal.wait(for: .seconds(3600))
        let clock = ContinuousClock()
        // The fire was used up: the next wait lasts its duration.
        let waited = await clock.measure { await signal.wait(for: .milliseconds(50)) }
        #expect(waited >= .milliseconds(50))
    }

    @Test func aFireWakesTheWaitingTask() async {
        let signal = WakeSignal()
        let waiter = Task { await signal.wait(for: .seconds(3600)) }
        while !signal.isWaiting { await Task.yield() }
        signal.fire()
        await waiter.value
        #expect(!signal.isWaiting)
    }

    @Test func aWaitEndsWhenItsDurationHasPassed() async {
        let signal = WakeSignal()
        let clock = ContinuousClock()
        let waited = await clock.measure { await signal.wait(for: .milliseconds(20)) }
        #expect(waited >= .milliseconds(20))
    }

    @Test func cancellingTheWaitingTaskEndsItsWait() async {
        let signal = WakeSignal()
        let waiter = Task { await signal.wait(for: .seconds(3600)) }
        while !signal.isWaiting { await Task.yield() }
        waiter.cancel()
        await waiter.value
        #expect(!signal.isWaiting)
    }
}
