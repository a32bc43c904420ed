import Synchronization

/// Shares one in-flight operation per key among concurrent callers: when many credentials ask
/// the same identity endpoint for the same token at once, it is asked once.
public final class SingleFlight<Value: Sendable>: Sendable {
    private let inFlight = Mutex([String: Task<Value, any Error>]())

    public init() {}

    public func run(key: String, _ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let task: Task<Value, any Error> = inFlight.withLock { inFlight in
            if let running = inFlight[key] { return running }
            let started = Task { try await operation() }
            inFlight[key] = started
            return started
        }
        defer { inFlight.withLock { inFlight in if inFlight[key] == task { inFlight[key] = nil } } }
        return try await task.value
    }
}
