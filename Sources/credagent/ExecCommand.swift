import ArgumentParser
import CloudAuth
import CredentialAgent
import CredentialModel
import Foundation
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

/// `credagent exec --env VAR=NAME.FIELD ... -- CMD ARGS...`: runs a command with credentials in
/// its environment, restarts or signals it when they rotate, forwards SIGTERM, SIGINT and SIGHUP
/// to it and exits with its status.
struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command with credentials from the running agent in its environment.",
        usage: "credagent exec [--socket P] --env VAR=NAME.FIELD ... [--on-rotation restart|signal:HUP|none] -- CMD ARGS...",
        discussion: """
            Waits until each credential named is servable, then starts CMD (no shell) with the \
            variables set. FIELD is a field of the credential's JSON: password, username, token, \
            host, port, database, expires_at, ... (connection.FIELD too); a null one is empty. \
            --on-rotation restart stops CMD with SIGTERM (SIGKILL after 10 s) and starts it again \
            with the new values; signal:NAME sends it that signal; none (the default) lets it run \
            with the values it started with. SIGTERM, SIGINT and SIGHUP are passed on to CMD. \
            Exits with CMD's status, 128+N when a signal N ended it; 1 when a credential is \
            unknown or refused (404, 403); 2 for a usage error; 127 when CMD cannot be started. \
            An agent that does not answer is waited for without end (it may still be starting): \
            bound the wait with a deadline of your own.
            """)

    @OptionGroup var socket: SocketOptions
    @Option(name: .customLong("env"), help: ArgumentHelp("VAR=NAME.FIELD: set VAR to FIELD of credential NAME (repeat).", valueName: "VAR=NAME.FIELD"))
    var environment: [String] = []
    @Option(name: .long, help: ArgumentHelp("What a rotation does: restart, signal:NAME or none.", valueName: "policy"))
    var onRotation = "none"
    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("-- then the command and its arguments.", valueName: "command"))
    var command: [String] = []

    /// How long a command asked to stop for a restart has before it is killed.
    static let restartGrace: Duration = .seconds(10)

    func validate() throws {
        // The passthrough argument takes --help before the parser sees it.
        if command.first == "--help" || command.first == "-h" { throw CleanExit.helpRequest(self) }
        guard command.first == "--" else {
            let given = command.isEmpty ? "no command was given" : "'\(command[0])' is not an option of exec"
            throw ValidationError("\(given); put the command after '--': credagent exec --env VAR=NAME.FIELD -- CMD ARGS...")
        }
        guard command.count > 1 else {
            throw ValidationError("nothing follows '--'; give the command to run: credagent exec --env VAR=NAME.FIELD -- CMD ARGS...")
        }
        do {
            _ = try ExecPlan(environment: environment, onRotation: onRotation)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func run() async throws {
        let plan: ExecPlan
        do {
            plan = try ExecPlan(environment: environment, onRotation: onRotation)
        } catch {
            throw ValidationError(error.message)
        }
        let client = try socket.client
        let argv = Array(command.dropFirst())
        var fields: [String: CredentialFields] = [:]
        for name in plan.credentials {
            do {
                fields[name] = try await Self.servable(name, client)
            } catch {
                throw AgentExit.report(error)
            }
        }
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        // Everything that feeds `events` is a child task of this group: ending the command's loop
        // (its exit status thrown) cancels and awaits them all.
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                for await signal in signals { sink.yield(.signal(signal.rawValue)) }
            }
            // As a container's entry point, the orphans of CMD become this process's children.
            group.addTask { await ChildReaper.run() }
            if plan.policy != .none {
                for (name, current) in fields {
                    group.addTask { await Self.follow(name, from: current, client, into: sink) }
                }
            }
            var child = try start(argv, plan, fields)
            group.addTask { [child] in sink.yield(.exited(child.pid, await child.exit())) }
            var restarting = false
            var ending = false
            for await event in events {
                switch event {
                case let .signal(number):
                    child.signal(number)
                    if number == SIGTERM || number == SIGINT { ending = true }
                case let .rotated(name, newFields):
                    fields[name] = newFields
                    switch plan.policy {
                    case .none: break
                    case let .signal(number, _): child.signal(number)
                    case .restart:
                        guard !restarting, !ending else { break }
                        restarting = true
                        child.signal(SIGTERM)
                        group.addTask { [pid = child.pid] in
                            guard (try? await Task.sleep(for: Self.restartGrace)) != nil else { return }
                            sink.yield(.stopTimedOut(pid))
                        }
                    }
                case let .stopTimedOut(pid) where pid == child.pid && restarting:
                    child.signal(SIGKILL)
                case .stopTimedOut:
                    break
                case let .exited(pid, status) where pid == child.pid:
                    guard restarting, !ending else { throw ExitCode(status.shellStatus) }
                    restarting = false
                    child = try start(argv, plan, fields)
                    group.addTask { [child] in sink.yield(.exited(child.pid, await child.exit())) }
                case .exited:
                    break
                }
            }
        }
    }

    /// What the main loop reacts to.
    enum Event: Sendable {
        case signal(Int32)
        case rotated(String, CredentialFields)
        /// A child asked to stop for a restart has not exited within ``restartGrace``.
        case stopTimedOut(pid_t)
        case exited(pid_t, ChildExit)
    }

    /// Starts the command with the plan's variables over this process's environment.
    private func start(_ argv: [String], _ plan: ExecPlan, _ fields: [String: CredentialFields]) throws -> SpawnedProcess {
        let variables: [String: String]
        do {
            variables = try plan.variables(fields)
        } catch {
            throw ValidationError(error.message)
        }
        let process: SpawnedProcess
        do {
            process = try SpawnedProcess(argv: argv, environment: ProcessInfo.processInfo.environment.merging(variables) { $1 },
                                         attachment: .inherited)
        } catch {
            FileHandle.standardError.write(Data("credagent: \(error.message)\n".utf8))
            throw ExitCode(127)
        }
        return process
    }

    /// The credential's fields once the agent serves it: while the agent is not up yet or has
    /// no servable secret, asks again every second (saying so once).
    private static func servable(_ name: String, _ client: AgentClient) async throws -> CredentialFields {
        var said = false
        while true {
            do {
                return try CredentialFields(json: try await client.credentialJSON(name: name))
            } catch let error as AgentClientError where error.unreachable || error.status == 503 {
                if !said {
                    FileHandle.standardError.write(Data("credagent: waiting for \(name): \(error.message)\n".utf8))
                    said = true
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Long polls `name` from `current`'s version, reporting each new version.
    private static func follow(_ name: String, from current: CredentialFields, _ client: AgentClient,
                               into events: AsyncStream<Event>.Continuation) async {
        var version = Int(current.text(of: "version")) ?? 0
        while !Task.isCancelled {
            do {
                guard let json = try await client.credentialJSON(name: name, changedFrom: version,
                                                                 waitingUpTo: AgentClient.longestWait) else { continue }
                let fields = try CredentialFields(json: json)
                version = Int(fields.text(of: "version")) ?? version
                events.yield(.rotated(name, fields))
            } catch {
                // The agent restarting, or the credential not servable for a while: ask again.
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
