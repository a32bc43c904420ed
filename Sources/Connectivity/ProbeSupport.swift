import CloudAuth
import Foundation

/// What a blocking check found: its timed steps, what the server revealed, and the failure.
public struct ProbeOutcome: Sendable {
    var steps: [ProbeStep] = []
    var details: [ProbeDetail] = []
    var failure: ProbeFailure?
}

/// Where a ``BlockingProbe`` connects and how it checks a credential there, with a call that
/// blocks its thread (libpq, a socket read).
public protocol BlockingProbeTarget: Sendable {
    /// The credential kind the report names.
    static var kind: String { get }
    /// Where the probe connects, for the report and messages.
    var endpoint: String { get }
    /// Connects, authenticates and reports what happened; blocks its thread.
    func check() -> ProbeOutcome
}

/// A probe whose check blocks its thread: the check runs on a `BlockingExecutor`, off Swift's
/// cooperative pool, and completes a report named after the credential. ``PostgresProbe`` and
/// ``RedisProbe`` are its two kinds.
public struct BlockingProbe<Target: BlockingProbeTarget>: Sendable {
    public var name: String
    public var target: Target
    private let executor: BlockingExecutor

    public init(name: String, target: Target, executor: BlockingExecutor = .shared) {
        self.name = name
        self.target = target
        self.executor = executor
    }

    /// Connects, authenticates and reports; never throws: every failure is in the report.
    public func run() async -> ProbeReport {
        let target = self.target
        let outcome = (try? await executor.run { target.check() })
            ?? ProbeOutcome(failure: ProbeFailure(.failed, "the check could not run"))
        var report = ProbeReport(name: name, kind: Target.kind, endpoint: target.endpoint)
        report.steps = outcome.steps
        report.details = outcome.details
        report.failure = outcome.failure
        return report
    }
}

/// Times the steps of one probe; a step that throws is still recorded, up to the failure.
struct StepTimer {
    private(set) var steps: [ProbeStep] = []
    private let clock = ContinuousClock()

    mutating func time<T, Failure: Error>(_ name: String, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        let start = clock.now
        defer { steps.append(ProbeStep(name, seconds: (clock.now - start) / .seconds(1))) }
        return try body()
    }

    mutating func time<T>(_ name: String, _ body: () async throws -> T) async rethrows -> T {
        let start = clock.now
        defer { steps.append(ProbeStep(name, seconds: (clock.now - start) / .seconds(1))) }
        return try await body()
    }
}

extension String {
    /// This text with every occurrence of the secret replaced by `<redacted>`: a last guard for
    /// messages that come from a server or a C library.
    func redacting(_ secret: Secret?) -> String {
        guard let secret, !secret.isEmpty else { return self }
        return replacingOccurrences(of: secret.reveal(), with: "<redacted>")
    }

    /// A C library message as one trimmed line.
    var singleLine: String {
        split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
    }
}
