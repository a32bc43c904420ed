import CloudAuth
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

private struct Failed: Error {}

/// Jobs that block until `count` of them are running at once (or ten seconds pass).
private final class Barrier: @unchecked Sendable {
    private let condition = NSCondition()
    private var arrived = 0
    private let count: Int

    init(count: Int) { self.count = count }

    /// True when every job arrived while this one was still waiting.
    func arriveAndWait() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        arrived += 1
        condition.broadcast()
        let deadline = Date().addingTimeInterval(10)
        while arrived < count, condition.wait(until: deadline) {}
        return arrived >= count
    }
}

@Suite struct BlockingExecutorTests {
    @Test func returnsTheResultAndPassesOnTheError() async throws {
        let executor = BlockingExecutor(maxThreads: 2, name: "test.result")
        #expect(try await executor.run { 6 * 7 } == 42)
        await #expect(throws: Failed.self) { try await executor.run { throw Failed() } }
    }

    @Test func aBlockedJobDoesNotQueueTheOthers() async throws {
        let executor = BlockingExecutor(maxThreads: 8, name: "test.grow")
        let barrier = Barrier(count: 4)
        let allMet = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 { group.addTask { try await executor.run { barrier.arriveAndWait() } } }
            var results: [Bool] = []
            for try await met in group { results.append(met) }
            return results
        }
        #expect(allMet == [true, true, true, true], "four jobs ran at the same time on four threads")
    }

    @Test func noMoreThreadsThanTheLimit() async throws {
        let executor = BlockingExecutor(maxThreads: 1, name: "test.limit")
        let threads = try await withThrowingTaskGroup(of: UInt.self) { group in
            for _ in 0..<5 { group.addTask { try await executor.run { UInt(bitPattern: Int(bitPattern: pthread_self())) } } }
            var threads: Set<UInt> = []
            for try await thread in group { threads.insert(thread) }
            return threads
        }
        #expect(threads.count == 1, "five jobs, one thread")
    }
}
