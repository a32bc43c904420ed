import CredentialAgent
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct ConcurrencyLimiterTests {
    /// Operations in flight now and at most, as the limited bodies see them.
    final class Gauge: Sendable {
        private let counts = Mutex((now: 0, most: 0))
        func enter() { counts.withLock { $0.now += 1; $0.most = max($0.most, $0.now) } }
        func leave() { counts.withLock { $0.now -= 1 } }
        var most: Int { counts.withLock { $0.most } }
    }

    @Test func neverMoreThanTheLimitRunAndEveryOperationRuns() async throws {
        let limiter = ConcurrencyLimiter(limit: 3)
        let gauge = Gauge()
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<40 {
                group.addTask {
                    try await limiter.run {
                        gauge.enter()
                        defer { gauge.leave() }
                        try await Task.sleep(for: .milliseconds(10))
                        return index
                    }
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(results.sorted() == Array(0..<40))
        #expect(gauge.most == 3)
    }

    @Test func aFailingOperationFreesItsSlot() async throws {
        struct Refused: Error {}
        let limiter = ConcurrencyLimiter(limit: 1)
        await #expect(throws: Refused.self) { try await limiter.run { throw Refused() } }
        #expect(try await limiter.run { 7 } == 7)
        #expect(ConcurrencyLimiter(limit: 0).limit == 1)
    }
}
