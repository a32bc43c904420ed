import CloudAuth
import Foundation

/// What a blocking check found: its timed steps, what the server revealed, and the failure.
struct ProbeOutcome: Sendable {
    var steps: [ProbeStep] = []
    var details: [ProbeDetail] = []
    var failure: ProbeFailure?
}

extension ProbeReport {
    /// This report completed by a blocking check run on `executor`, off Swift's cooperative pool.
    func completed(on executor: BlockingExecutor, by check: @escaping @Sendable () -> ProbeOutcome) async -> ProbeReport {
        let outcome = (try? await executor.run(check))
            ?? ProbeOutcome(failure: ProbeFailure(.failed, "the check could not run"))
        var report = self
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
