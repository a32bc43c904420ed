import CloudAuth
import CredentialModel
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Keeps one credential's sink files equal to what the store serves: written when a new version
/// is published (then `on_rotate` runs), removed when the credential stops being servable (its
/// serving window ended, it was removed from the config, the agent stops), so that no file ever
/// holds a secret the agent would no longer hand out.
///
/// It follows the store as a long-poll client does (``CredentialStore/waitForVersion(_:otherThan:_:)``),
/// and wakes at the end of the written secret's serving window. Files are written on the blocking
/// pool.
final class SinkKeeper: Sendable {
    let name: String
    let sinks: CredentialSinks
    private let store: CredentialStore
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let signal = WakeSignal()

    private struct Stop {
        var requested = false
        /// Paths another keeper writes from now on: left in place.
        var keeping: Set<String> = []
    }
    private let stopState = NIOLockedValueBox(Stop())

    /// What the files hold.
    private enum OnDisk: Equatable {
        /// Not known yet: files may be left from an earlier run.
        case unknown
        case removed
        case version(Int)
    }

    /// The longest sleep between looks at the store.
    static let maxNap: TimeInterval = 60
    /// The bounds of the delay before a failed write is tried again.
    static let retryDelays: ClosedRange<TimeInterval> = 1...60

    init(name: String, sinks: CredentialSinks, store: CredentialStore, logger: Logger, now: @escaping @Sendable () -> Date) {
        self.name = name
        self.sinks = sinks
        self.store = store
        var logger = logger
        logger[metadataKey: "credential"] = "\(name)"
        self.logger = logger
        self.now = now
    }

    /// Ends ``run()``; its files are removed except those in `keeping`.
    func stop(keeping: Set<String>) {
        stopState.withLockedValue { $0 = Stop(requested: true, keeping: keeping) }
        signal.fire()
    }

    func run() async {
        var onDisk = OnDisk.unknown
        var retryDelay: TimeInterval?
        var hook: Task<Void, Never>?
        let runner = sinks.onRotate.map { RotationHookRunner(hook: $0, credential: name, logger: logger) }
        for file in sinks.files where file.sharedDirectory {
            logger.warning("sink \(file.path): its directory may be written by other uids (shared_directory), which could replace the file")
        }
        while !Task.isCancelled, !stopState.withLockedValue({ $0.requested }) {
            let current = now()
            let snapshot = store.snapshot(name)
            var wakeAt: Date?
            if let snapshot, let held = snapshot.machine.servable(at: current), let body = snapshot.body {
                wakeAt = held.servableUntil
                if onDisk != .version(snapshot.version) {
                    if await write(Array(body.readableBytesView), version: snapshot.version) {
                        onDisk = .version(snapshot.version)
                        retryDelay = nil
                        if let runner { hook = Self.startHook(runner, version: snapshot.version, after: hook) }
                    } else {
                        let delay = retryDelay.map { min($0 * 2, Self.retryDelays.upperBound) } ?? Self.retryDelays.lowerBound
                        retryDelay = delay
                        wakeAt = min(held.servableUntil, current.addingTimeInterval(delay))
                    }
                }
            } else if onDisk != .removed {
                if case .version = onDisk { logger.info("credential not servable; removing its sink files") }
                await remove(except: [])
                onDisk = .removed
            }
            await waitForChange(from: snapshot?.version, until: wakeAt)
        }
        // A signal still waiting for its process is dropped; a command runs to its end (at most
        // its timeout), so no hook outlives the keeper.
        if case .signal? = sinks.onRotate { hook?.cancel() }
        await hook?.value
        await remove(except: stopState.withLockedValue { $0.keeping })
    }

    /// Runs the hook for `version` once the previous run has finished: a signal still waiting for
    /// its process is superseded, a command runs to its end.
    private static func startHook(_ runner: RotationHookRunner, version: Int, after previous: Task<Void, Never>?) -> Task<Void, Never> {
        if case .signal = runner.hook { previous?.cancel() }
        return Task {
            await previous?.value
            await runner.run(version: version)
        }
    }

    /// Writes every file; false (after logging each failure) when one could not be written.
    private func write(_ json: [UInt8], version: Int) async -> Bool {
        let fields: CredentialFields
        do {
            fields = try CredentialFields(json: json)
        } catch {
            logger.error("sinks not written: the credential's JSON could not be read back")
            return false
        }
        let files = sinks.files
        let failures = (try? await BlockingExecutor.shared.run { () -> [String] in
            files.compactMap { file in
                if let problem = file.format.problem(with: fields) { return "sink \(file.path): \(problem)" }
                do throws(SinkError) {
                    try SinkFileSystem.write(file.format.render(json: json, fields: fields), to: file)
                    return nil
                } catch {
                    return "sink \(file.path): \(error.message)"
                }
            }
        }) ?? ["the blocking pool is unavailable"]
        for failure in failures {
            logger.error("\(failure)", metadata: ["version": "\(version)"])
        }
        if failures.isEmpty, !files.isEmpty {
            logger.info("sinks written", metadata: ["version": "\(version)", "files": "\(files.count)"])
        }
        return failures.isEmpty
    }

    private func remove(except keeping: Set<String>) async {
        let files = sinks.files.filter { !keeping.contains($0.path) }
        let failures = (try? await BlockingExecutor.shared.run { () -> [String] in
            files.compactMap { file in
                do throws(SinkError) {
                    try SinkFileSystem.remove(file)
                    return nil
                } catch {
                    return "sink \(file.path): \(error.message)"
                }
            }
        }) ?? []
        for failure in failures { logger.error("\(failure)") }
    }

    /// Returns when the store publishes a version other than `version`, at `until`, after
    /// ``maxNap``, or when stopped.
    private func waitForChange(from version: Int?, until: Date?) async {
        let seconds = min(max(until.map { $0.timeIntervalSince(now()) } ?? Self.maxNap, 0.001), Self.maxNap)
        let nap = Duration.seconds(seconds)
        guard let version else { return await signal.wait(for: nap) }
        switch store.waitForVersion(name, otherThan: version, { [signal] _ in signal.fire() }) {
        case .changed: return
        case .unknown: await signal.wait(for: nap)
        case let .waiting(id):
            await signal.wait(for: nap)
            store.cancelWait(name, id: id)
        }
    }
}

/// Runs a ``SinkKeeper`` for every credential with sinks or a hook, following the config as it
/// is reloaded: a credential whose `sinks`/`on_rotate` changed gets a new keeper (the old one
/// removes the files no longer configured), a removed one's files are removed.
public final class SinkSupervisor: Sendable {
    private let store: CredentialStore
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let configs: AsyncStream<[CredentialConfig]>
    private let updates: AsyncStream<[CredentialConfig]>.Continuation

    public init(store: CredentialStore, logger: Logger, now: @escaping @Sendable () -> Date = Date.init) {
        self.store = store
        self.logger = logger
        self.now = now
        (configs, updates) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Makes the keepers follow `credentials` (the agent's config, at start and after a reload).
    public func apply(_ credentials: [CredentialConfig]) {
        updates.yield(credentials)
    }

    /// Runs the keepers until cancelled; then every sink file is removed. As PID 1, also reaps
    /// the orphans a hook leaves (``ChildReaper``).
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await ChildReaper.run() }
            var keepers: [String: SinkKeeper] = [:]
            for await credentials in configs {
                let wanted = Dictionary(credentials.filter { !$0.sinks.isEmpty }.map { ($0.name.rawValue, $0.sinks) }) { first, _ in first }
                let paths = Set(wanted.values.flatMap { $0.files.map(\.path) })
                for (name, keeper) in keepers where wanted[name] != keeper.sinks {
                    keeper.stop(keeping: paths)
                    keepers[name] = nil
                }
                for (name, sinks) in wanted where keepers[name] == nil {
                    let keeper = SinkKeeper(name: name, sinks: sinks, store: store, logger: logger, now: now)
                    keepers[name] = keeper
                    group.addTask { await keeper.run() }
                }
            }
        }
    }
}
