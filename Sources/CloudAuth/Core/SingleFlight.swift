import Synchronization

/// Shares one in-flight operation per key among concurrent callers: when many credentials ask
/// the same identity endpoint for the same token at once, it is asked once.
///
/// The operation runs in a task of its own so that a caller's cancellation does not fail the
/// others; every caller awaits that task's end, so it never outlives them. Its result or failure
/// is every caller's; a call after it ended starts the operation again.
public final class SingleFlight<Value: Sendable>: Sendable {
    private struct Flight {
        var id: Int
        var task: Task<Value, any Error>
        var callers: Int
    }
    private struct State {
        var flights: [String: Flight] = [:]
        var nextID = 0
    }
    private let state = Mutex(State())

    public init() {}

    public func run(key: String, _ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let (id, task): (Int, Task<Value, any Error>) = state.withLock { state in
            if var flight = state.flights[key] {
                flight.callers += 1
                state.flights[key] = flight
                return (flight.id, flight.task)
            }
            let id = state.nextID
            state.nextID += 1
            let started = Task {
                defer { self.ended(key, id) }
                return try await operation()
            }
            state.flights[key] = Flight(id: id, task: started, callers: 1)
            return (id, started)
        }
        defer {
            state.withLock { state in
                if state.flights[key]?.id == id { state.flights[key]?.callers -= 1 }
            }
        }
        return try await task.value
    }

    /// How many callers are waiting for the operation of `key` (0 when none is in flight).
    public func callers(key: String) -> Int {
        state.withLock { $0.flights[key]?.callers ?? 0 }
    }

    private func ended(_ key: String, _ id: Int) {
        state.withLock { state in
            if state.flights[key]?.id == id { state.flights[key] = nil }
        }
    }
}
