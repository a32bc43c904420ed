import Foundation

/// Threads for blocking C calls (libcurl transfers, libpq connects, OpenSSL handshakes), so that
/// they never occupy Swift's cooperative thread pool.
///
/// The pool grows on demand up to `maxThreads`: a job that finds no idle thread starts one, so
/// a few stalled transfers never queue the others behind them. Idle threads stay for reuse.
public final class BlockingExecutor: @unchecked Sendable {
    // All guarded by `condition`.
    private var jobs: [@Sendable () -> Void] = []
    private var threads = 0
    private var idle = 0
    private let condition = NSCondition()
    private let maxThreads: Int
    private let name: String

    /// The process-wide pool used by default.
    public static let shared = BlockingExecutor(maxThreads: 256, name: "credagent.blocking")

    public init(maxThreads: Int, name: String) {
        self.maxThreads = max(1, maxThreads)
        self.name = name
    }

    private func workLoop() {
        condition.lock()
        while true {
            while jobs.isEmpty {
                idle += 1
                condition.wait()
                idle -= 1
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
            condition.lock()
        }
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    ///
    /// Never inlined: the type of the continuation it awaits is built on entry to the function
    /// that awaits it, the first time with a scan of every protocol conformance in the binary, and
    /// a caller that only might call this (a command that signs with keys from the environment
    /// rather than a profile's file) should not pay for it.
    @inline(never)
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            jobs.append { continuation.resume(with: Result { try body() }) }
            if idle >= jobs.count || threads >= maxThreads {
                condition.signal()
                condition.unlock()
                return
            }
            threads += 1
            let index = threads
            condition.unlock()
            let threadName = "\(name).\(index)"
            let thread = Thread { [self] in
                // Named from the thread itself: on Linux a name set before start is not applied,
                // and the thread would carry its creator's name.
                Thread.current.name = threadName
                workLoop()
            }
            thread.stackSize = 512 << 10
            thread.start()
        }
    }
}
