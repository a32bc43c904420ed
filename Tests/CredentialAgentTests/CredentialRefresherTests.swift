import CloudAuth
import CredentialModel
import Foundation
import Logging
import NIOConcurrencyHelpers
import Synchronization
import Testing
@testable import CredentialAgent

/// A credential source whose fetches wait until the test lets them finish, and which counts them.
private final class GatedSource: CredentialSource {
    private let state = Mutex<(started: Int, waiting: [CheckedContinuation<Void, Never>])>((0, []))

    var started: Int { state.withLock { $0.started } }
    var waiting: Int { state.withLock { $0.waiting.count } }

    func fetch(now: Date) async throws -> IssuedCredential {
        await withCheckedContinuation { continuation in
            state.withLock { state in
                state.started += 1
                state.waiting.append(continuation)
            }
        }
        let issued = Date()
        return IssuedCredential(username: "kong", secret: Secret("token-\(started)"), issuedAt: issued,
                                expiresAt: issued.addingTimeInterval(900))
    }

    /// Lets every fetch that is waiting finish.
    func release() {
        let waiting = state.withLock { state in
            defer { state.waiting.removeAll() }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }
}

private func until(_ condition: () -> Bool) async {
    while !condition() { await Task.yield() }
}

/// A wall clock the test moves by hand.
private final class ManualClock: Sendable {
    private let current = Mutex(Date())
    func now() -> Date { current.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLock { $0 += seconds } }
}

@Suite struct CredentialRefresherTests {
    @Test func concurrentForcedRefreshesShareOneFetch() async throws {
        let config = CredentialConfig(name: CredentialName("orders-db")!, target: .postgres(.init(
            connection: CredentialConnection.Postgres(host: "db.example.com"), login: .aws(RDSLogin(user: "kong")))))
        let source = GatedSource()
        let store = CredentialStore()
        let clock = ManualClock()
        let refresher = CredentialRefresher(config: config, source: source, refresh: RefreshConfig(), store: store,
                                            metrics: AgentMetrics(), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                            now: { clock.now() })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await refresher.run() }
            await until { source.waiting == 1 }
            source.release()
            await until { store.snapshot("orders-db")?.version == 1 }

            // Just after a new secret, a forced refresh answers with it instead of asking upstream.
            #expect(try await refresher.credential(force: true).get().version == 1)
            #expect(source.started == 1)
            clock.advance(RefreshConfig().policy.clientMinInterval)

            let answers = NIOLockedValueBox<[Int]>([])
            try await withThrowingTaskGroup(of: Void.self) { clients in
                for _ in 0..<10 {
                    clients.addTask {
                        let result = await refresher.credential(force: true)
                        let snapshot = try result.get()
                        answers.withLockedValue { $0.append(snapshot.version) }
                    }
                }
                await until { source.waiting == 1 }
                // Give every client the chance to join before the fetch completes.
                for _ in 0..<100 { await Task.yield() }
                source.release()
                try await clients.waitForAll()
            }
            #expect(source.started == 2)
            #expect(answers.withLockedValue { $0 } == Array(repeating: 2, count: 10))
            #expect(store.snapshot("orders-db")?.version == 2)

            // A caller content with the current credential does not cause a fetch.
            let current = try await refresher.credential(minValid: 60).get()
            #expect(current.version == 2)
            #expect(source.started == 2)

            // More than the 900 s token can give is capped at half its lifetime: no fetch.
            clock.advance(RefreshConfig().policy.clientMinInterval)
            #expect(try await refresher.credential(minValid: 3600).get().version == 2)
            #expect(source.started == 2)
            group.cancelAll()
        }
    }

    @Test func clientRefreshesAreCappedAndSpaced() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var machine = RefreshStateMachine(policy: RefreshConfig().policy, backoff: RefreshConfig().backoff)
        #expect(!machine.answersClient(minValid: 0, force: false, at: start))
        machine.fetchSucceeded(IssuedCredential(username: "u", secret: Secret("s"), issuedAt: start,
                                                    expiresAt: start.addingTimeInterval(900)), now: start, random: 0)
        // Within the spacing interval even a forced refresh is answered with the held secret.
        #expect(machine.answersClient(minValid: 10_000, force: true, at: start.addingTimeInterval(4.9)))
        let later = start.addingTimeInterval(5)
        #expect(!machine.answersClient(minValid: 0, force: true, at: later))
        // Half of the 900 s lifetime is the most min_valid asks for; 885 s is servable at most.
        #expect(machine.answersClient(minValid: 10_000, force: false, at: later))
        #expect(machine.answersClient(minValid: 450, force: false, at: start.addingTimeInterval(435)))
        #expect(!machine.answersClient(minValid: 450, force: false, at: start.addingTimeInterval(436)))
        #expect(!machine.answersClient(minValid: 100, force: false, at: start.addingTimeInterval(786)))
        // Past the serving window nothing answers.
        #expect(!machine.answersClient(minValid: 0, force: false, at: start.addingTimeInterval(885)))
    }

    @Test func theClientSpacingIsTheConfiguredOne() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let refresh = RefreshConfig(clientMinInterval: .milliseconds(500))
        var machine = RefreshStateMachine(policy: refresh.policy, backoff: refresh.backoff)
        machine.fetchSucceeded(IssuedCredential(username: "u", secret: Secret("s"), issuedAt: start,
                                                    expiresAt: start.addingTimeInterval(900)), now: start, random: 0)
        #expect(machine.answersClient(minValid: 0, force: true, at: start.addingTimeInterval(0.4)))
        #expect(!machine.answersClient(minValid: 0, force: true, at: start.addingTimeInterval(0.5)))
    }
}
