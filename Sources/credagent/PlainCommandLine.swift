/// The commands that run once per use, read without swift-argument-parser when written in their
/// plain form: Kubernetes runs `health` every few seconds in every pod, scripts run `get` and
/// `token rds` once per connection. swift-argument-parser's first parse reflects over the command
/// tree, which scans the binary's thousands of protocol conformances: it was a third of these
/// commands' start-up (docs/OPERATIONS.md, "Probes").
///
/// Only the plain form is read here: the command's words, then its own options, each at most once,
/// each as `--name value` (a flag alone), in any order, and the arguments it takes. Anything else
/// (another command or option, `--name=value`, a value that starts with `-`, a number that is not
/// one, `--help`, a mistake) is left to swift-argument-parser, which stays the parser of record:
/// it writes the help, the completions and every usage error. Both run the same code afterwards
/// (``HealthCommand/check(ready:client:)``, ``GetCommand/show(name:field:format:minValid:client:)``,
/// ``TokenRDSCommand/print(host:port:user:region:benchmarkIterations:)``).
enum PlainCommandLine: Equatable {
    /// `health [--ready] [--socket PATH] [--server-uid UID]`.
    case health(ready: Bool, socket: String?, serverUID: String?)
    /// `get NAME [--field FIELD] [--socket PATH] [--server-uid UID]`.
    case get(name: String, field: String?, socket: String?, serverUID: String?)
    /// `token rds --host HOST --port PORT --user USER [--region REGION]`.
    case tokenRDS(host: String, port: Int, user: String, region: String?)

    /// The command line `arguments` (without the program's name) in plain form, or nil.
    init?(_ arguments: [String]) {
        if let words = PlainWords(arguments, command: ["health"], flags: ["--ready"],
                                  options: ["--socket", "--server-uid"], arguments: 0) {
            self = .health(ready: words.has("--ready"), socket: words["--socket"], serverUID: words["--server-uid"])
        } else if let words = PlainWords(arguments, command: ["get"], options: ["--field", "--socket", "--server-uid"],
                                         arguments: 1) {
            self = .get(name: words.arguments[0], field: words["--field"], socket: words["--socket"],
                        serverUID: words["--server-uid"])
        } else if let words = PlainWords(arguments, command: ["token", "rds"],
                                         options: ["--host", "--port", "--user", "--region"], arguments: 0),
                  let host = words["--host"], let port = words["--port"].flatMap({ Int($0) }), let user = words["--user"] {
            self = .tokenRDS(host: host, port: port, user: user, region: words["--region"])
        } else {
            return nil
        }
    }

    /// Runs the command, as its swift-argument-parser form would.
    func run() async throws {
        switch self {
        case let .health(ready, socket, serverUID):
            let client = try SocketOptions.sequentialClient(socket: socket, serverUID: serverUID)
            try await HealthCommand.check(ready: ready, client: client)
        case let .get(name, field, socket, serverUID):
            let client = try SocketOptions.sequentialClient(socket: socket, serverUID: serverUID)
            try await GetCommand.show(name: name, field: field, format: .json, minValid: nil, client: client)
        case let .tokenRDS(host, port, user, region):
            try await TokenRDSCommand.print(host: host, port: port, user: user, region: region, benchmarkIterations: nil)
        }
    }
}

/// One command's options and arguments, read in plain form. Arrays, not sets or dictionaries: the
/// first set or dictionary of a kind looks its key type's `Hashable` conformance up, one more
/// scan of them all.
private struct PlainWords {
    private var given: [(name: String, value: String)] = []
    /// The arguments that are not options, in order.
    private(set) var arguments: [String] = []

    /// `line` read as `command` followed by any of `flags` and `options` and exactly `arguments`
    /// other words; nil when it is not that.
    init?(_ line: [String], command: [String], flags: [String] = [], options: [String], arguments count: Int) {
        guard line.starts(with: command) else { return nil }
        var rest = line.dropFirst(command.count)
        while let word = rest.popFirst() {
            if flags.contains(word) || options.contains(word) {
                guard self[word] == nil else { return nil }  // given twice
                if flags.contains(word) {
                    given.append((word, ""))
                } else {
                    guard let value = rest.popFirst(), !value.hasPrefix("-") else { return nil }
                    given.append((word, value))
                }
            } else if word.hasPrefix("-") {
                return nil
            } else {
                arguments.append(word)
            }
        }
        guard arguments.count == count else { return nil }
    }

    /// The value of option `name`, nil when not given.
    subscript(name: String) -> String? {
        given.first { $0.name == name }?.value
    }

    /// Whether flag `name` was given.
    func has(_ name: String) -> Bool {
        self[name] != nil
    }
}
