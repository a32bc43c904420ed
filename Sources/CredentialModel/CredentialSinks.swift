import Foundation

/// A credential's `sinks:` and `on_rotate:` (docs/CONFIG.md, "Sinks"): files the agent rewrites
/// with every new secret, and who is told afterwards.
public struct CredentialSinks: Sendable, Equatable {
    public var files: [SinkFile]
    public var onRotate: RotationHook?

    public init(files: [SinkFile] = [], onRotate: RotationHook? = nil) {
        self.files = files
        self.onRotate = onRotate
    }

    /// Nothing to write and nobody to tell.
    public var isEmpty: Bool { files.isEmpty && onRotate == nil }
}

/// One file of `sinks:`.
public struct SinkFile: Sendable, Equatable {
    /// Absolute path; the agent replaces the file, never writes into it.
    public var path: String
    public var format: SinkFormat
    /// Permission bits, set on every write.
    public var mode: UInt32
    /// Owner and group set on every write; nil leaves the agent's.
    public var owner: SinkAccount?
    public var group: SinkAccount?
    /// The file's own directory may be written by other uids on purpose (a Kubernetes
    /// `emptyDir`): its owner and mode are not checked, the directories above it still are.
    public var sharedDirectory: Bool

    public init(path: String, format: SinkFormat, mode: UInt32 = 0o600, owner: SinkAccount? = nil, group: SinkAccount? = nil,
                sharedDirectory: Bool = false) {
        self.path = path
        self.format = format
        self.mode = mode
        self.owner = owner
        self.group = group
        self.sharedDirectory = sharedDirectory
    }
}

/// A user or group as the config names it: a numeric id (used as it is, whether or not the
/// system knows it), or a name looked up when the file is written.
public enum SinkAccount: Sendable, Equatable, CustomStringConvertible {
    case id(UInt32)
    case name(String)

    public var description: String {
        switch self {
        case let .id(id): String(id)
        case let .name(name): name
        }
    }
}

/// What the agent does after writing a credential's sinks for a new version.
public enum RotationHook: Sendable, Equatable {
    /// Sends `number` (written `name`, e.g. `HUP`) to the process whose id is in `pidFile`.
    case signal(number: Int32, name: String, pidFile: String)
    /// Runs `argv` (no shell) and kills it after `timeout`.
    case command(argv: [String], timeout: Duration)

    /// The signals `on_rotate.signal` may name.
    public static let signals: [(name: String, number: Int32)] = [
        ("HUP", SIGHUP), ("USR1", SIGUSR1), ("USR2", SIGUSR2), ("INT", SIGINT), ("TERM", SIGTERM), ("QUIT", SIGQUIT),
        ("WINCH", SIGWINCH), ("ALRM", SIGALRM),
    ]

    /// `HUP`, `SIGHUP` or `hup`; nil for a signal not in ``signals``.
    public static func signal(named text: String) -> (name: String, number: Int32)? {
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        return signals.first { $0.name == name }
    }

    /// The default and the bounds of `on_rotate.timeout`.
    public static let defaultTimeout: Duration = .seconds(30)
    public static let timeoutRange: ClosedRange<Duration> = .seconds(1) ... .seconds(600)
}
