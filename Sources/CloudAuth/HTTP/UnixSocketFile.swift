import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A problem with a listening socket's file or its directory, naming the path and the fix.
public struct UnixSocketFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// The file system side of a Unix socket a server listens on (the agent's socket API, a local
/// proxy): its directory (made 0750 when missing), a stale socket left by a crashed process, the
/// socket's exact mode, and its removal on stop.
///
/// ``listen(bind:close:)`` binds inside a new private (0700) directory next to ``path``, sets the
/// mode and renames the socket into place, so nobody can connect before the mode is right (the
/// process umask is left alone: other threads create files too). ``remove(inode:)`` removes the
/// socket only while it is still the one bound, not a successor's.
public struct UnixSocketFile: Sendable {
    /// Where the socket is.
    public let path: String
    /// Permission bits of the socket file.
    public let mode: UInt32
    /// The configuration key that chose ``path``, named in what to do about a problem.
    public let setting: String
    private let checkDirectory: @Sendable (String) throws -> Void

    /// - Parameter checkDirectory: called with the socket's directory once it exists; throws
    ///   (an error naming the fix) when the directory may not hold the socket.
    public init(path: String, mode: UInt32, setting: String,
                checkDirectory: @escaping @Sendable (_ directory: String) throws -> Void = { _ in }) {
        self.path = path
        self.mode = mode
        self.setting = setting
        self.checkDirectory = checkDirectory
    }

    /// The directory the socket is in.
    public var directory: String { (path as NSString).deletingLastPathComponent }

    /// Prepares the directory and the path, has `bind` listen on a Unix socket at the path it is
    /// given, sets the mode and moves the socket into place. Returns the listener and the socket's
    /// inode (for ``remove(inode:)``); when the socket cannot be put in place, the listener is
    /// closed with `close`. Throws ``UnixSocketFileError`` or what `checkDirectory` throws.
    public func listen<Listener: Sendable>(bind: (String) async throws -> Listener,
                                           close: (Listener) async -> Void) async throws -> (listener: Listener, inode: UInt64) {
        try prepare()
        let bound = try stagingPath() ?? path
        let listener: Listener
        do {
            listener = try await bind(bound)
        } catch {
            if bound != path { discardStaging(bound) }
            throw UnixSocketFileError(path: path, message: "cannot listen: \(error)")
        }
        do {
            return (listener, try finish(bound: bound))
        } catch {
            await close(listener)
            throw error
        }
    }

    /// Removes the socket file if it is still the one with `inode`.
    public func remove(inode: UInt64) {
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_ino) == inode, info.st_mode & S_IFMT == S_IFSOCK else { return }
        unlink(path)
    }

    /// Makes ``path`` ready for bind: creates the directory when it is missing, has it checked,
    /// removes a stale socket that nobody listens on, and refuses anything else in the way.
    private func prepare() throws {
        let directory = self.directory
        var info = stat()
        if stat(directory, &info) != 0 {
            guard errno == ENOENT else { throw failure(directory, "cannot be examined") }
            guard mkdir(directory, 0o750) == 0 else {
                throw failure(directory, "cannot be created", remedy: "create it, or choose another \(setting)")
            }
            // mkdir's mode is filtered by the umask; set it exactly.
            chmod(directory, 0o750)
        } else if info.st_mode & S_IFMT != S_IFDIR {
            throw UnixSocketFileError(path: directory, message: "is not a directory (choose another \(setting))")
        }
        try checkDirectory(directory)
        guard access(directory, W_OK | X_OK) == 0 else {
            throw failure(directory, "is not writable by this process", remedy: "fix its permissions or choose another \(setting)")
        }
        guard lstat(path, &info) == 0 else {
            guard errno == ENOENT else { throw failure(path, "cannot be examined") }
            return
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw UnixSocketFileError(path: path, message: "exists and is not a socket; refusing to replace it (remove it or choose another \(setting))")
        }
        if Self.isListening(path) {
            throw UnixSocketFileError(path: path, message: "another process is listening on this socket (is an agent already running?); stop it or choose another \(setting)")
        }
        guard unlink(path) == 0 || errno == ENOENT else { throw failure(path, "the stale socket cannot be removed") }
    }

    /// Whether something accepts connections on the Unix socket at `path`.
    public static func isListening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, UnixSocketAddress.streamSocketType, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard let address = UnixSocketAddress(path: path) else { return false }
        let result = address.withSocketAddress { connect(fd, $0, $1) }
        return result == 0
    }

    /// Where to bind: `s` inside a new private directory next to the socket; nil when that path
    /// would be too long for a Unix socket (then the socket is bound at ``path`` and its mode set
    /// right after).
    private func stagingPath() throws -> String? {
        let directory = self.directory
        guard (directory + "/.credagent-XXXXXX/s").utf8.count <= 107 else { return nil }
        var template = Array((directory + "/.credagent-XXXXXX").utf8CString)
        guard let staging = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw failure(directory, "cannot create a private directory to bind in")
        }
        return String(cString: staging) + "/s"
    }

    /// Sets the mode of the socket bound at `bound` exactly, moves it to ``path`` (removing the
    /// staging directory) and returns its inode.
    private func finish(bound: String) throws -> UInt64 {
        defer { if bound != path { discardStaging(bound) } }
        guard chmod(bound, mode_t(mode)) == 0 else { throw failure(path, "cannot set mode \(String(mode, radix: 8))") }
        if bound != path, rename(bound, path) != 0 { throw failure(path, "cannot move the socket into place") }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw failure(path, "cannot be examined after bind") }
        return UInt64(info.st_ino)
    }

    /// Removes a staging socket (if still there) and its private directory.
    private func discardStaging(_ bound: String) {
        unlink(bound)
        rmdir((bound as NSString).deletingLastPathComponent)
    }

    private func failure(_ path: String, _ what: String, remedy: String? = nil) -> UnixSocketFileError {
        let cause = String(cString: strerror(errno))
        return UnixSocketFileError(path: path, message: "\(what): \(cause)" + (remedy.map { " (\($0))" } ?? ""))
    }
}
