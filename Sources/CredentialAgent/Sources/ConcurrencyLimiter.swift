import Synchronization

/// Lets at most `limit` operations run at once; the others wait in order. Bounds how hard the
/// agent hits one identity endpoint (10,000 credentials starting together become a queue).
public final class ConcurrencyLimiter: Sendable {
    private struct State {
        var running = 0
        var queue: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())
    public let limit: Int

    public init(limit: Int) { self.limit = max(1, limit) }

    /// Runs `body` once a slot is free.
    public func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { state in
                if state.running < limit {
                    state.running += 1
                    return true
                }
                state.queue.append(continuation)
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    private func release() {
        // The slot passes straight to the next waiter, if any.
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.queue.isEmpty else {
                state.running -= 1
                return nil
            }
            return state.queue.removeFirst()
        }
        next?.resume()
    }
}
