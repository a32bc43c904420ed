import CloudAuth
import Synchronization
import Testing

/// An operation that waits until the test opens it, and counts how often it was started.
private final class Gate: Sendable {
    private let state = Mutex<(started: Int, waiting: [CheckedContinuation<Void, Never>])>((0, []))
    var started: Int { state.withLock { $0.started } }
    var waiting: Int { state.withLock { $0.waiting.count } }

    func pass() async {
        await withCheckedContinuation { continuation in
            state.withLock { state in
                state.started += 1
                state.waiting.append(continuation)
            }
        }
    }

    func open() {
        let waiting = state.withLock { state in
            defer { state.waiting.removeAll() }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }
}

private struct Refused: Error, Equatable {}

private func until(_ condition: () -> Bool) async {
    while !condition() { await Task.yield() }
}

@Suite struct SingleFlightTests {
    @Test func concurrentCallersOfOneKeyShareOneOperation() async throws {
        let flight = SingleFlight<Int>()
        let gate = Gate()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<5 {
                group.addTask { try await flight.run(key: "token") { await gate.pass(); return gate.started } }
            }
            await until { flight.callers(key: "token") == 5 && gate.waiting == 1 }
            gate.open()
            var results: [Int] = []
            for try await result in group { results.append(result) }
            #expect(results == [1, 1, 1, 1, 1])
        }
        #expect(gate.started == 1)
        #expect(flight.callers(key: "token") == 0)
    }

    @Test func differentKeysRunApartAndAnEndedOperationStartsAgain() async throws {
        let flight = SingleFlight<String>()
        #expect(try await flight.run(key: "a") { "first a" } == "first a")
        #expect(try await flight.run(key: "a") { "second a" } == "second a")
        #expect(try await flight.run(key: "b") { "b" } == "b")
    }

    @Test func aFailureReachesEveryWaitingCaller() async throws {
        let flight = SingleFlight<Int>()
        let gate = Gate()
        let outcomes = await withTaskGroup(of: Result<Int, Refused>.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    do {
                        return .success(try await flight.run(key: "k") { await gate.pass(); throw Refused() })
                    } catch {
                        return .failure(Refused())
                    }
                }
            }
            await until { flight.callers(key: "k") == 3 && gate.waiting == 1 }
            gate.open()
            var outcomes: [Result<Int, Refused>] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(outcomes.count == 3 && outcomes.allSatisfy { $0 == .failure(Refused()) })
        #expect(gate.started == 1)
        #expect(try await flight.run(key: "k") { 7 } == 7)
    }

    @Test func aCancelledCallerDoesNotCancelTheSharedOperation() async throws {
        let flight = SingleFlight<Bool>()
        let gate = Gate()
        let operation: @Sendable () async throws -> Bool = {
            await gate.pass()
            return Task.isCancelled
        }
        let first = Task { try await flight.run(key: "k", operation) }
        let second = Task { try await flight.run(key: "k", operation) }
        await until { flight.callers(key: "k") == 2 && gate.waiting == 1 }
        first.cancel()
        gate.open()
        #expect(try await second.value == false, "the operation saw no cancellation")
        #expect(try await first.value == false, "the cancelled caller still got the shared result")
        #expect(gate.started == 1)
    }
}
