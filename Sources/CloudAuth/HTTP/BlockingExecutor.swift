import Foundation

/// A fixed set of threads for blocking C calls (libcurl transfers, libpq connects), so that
/// they never occupy Swift's cooperative thread pool.
public final class BlockingExecutor: @unchecked Sendable {
    // Guarded by `condition`.
    private var jobs: [@Sendable () -> Void] = []
    private let condition = NSCondition()

    /// The process-wide pool used by default.
    public static let shared = BlockingExecutor(threads: 8, name: "credagent.blocking")

    public init(threads: Int, name: String) {
        for index in 0..<max(1, threads) {
            let thread = Thread { [unowned self] in self.workLoop() }
            thread.name = "\(name).\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private func workLoop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            jobs.append { continuation.resume(with: Result { try body() }) }
            condition.signal()
            condition.unlock()
        }
    }
}
