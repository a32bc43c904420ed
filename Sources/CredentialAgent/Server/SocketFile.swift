import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error about the socket file or its directory, naming the path and the fix.
public struct SocketFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// The filesystem side of the listening socket: the parent directory, a stale socket left by a
/// crashed agent, the file mode, and removal on shutdown.
enum SocketFile {
    /// Makes `path` ready for bind: creates the parent directory (0750) when it is missing,
    /// refuses a directory that another uid could change (``StrictModes``; with
    /// `sharedDirectory`, only the directories above it), removes a stale socket that nobody
    /// listens on, and refuses anything else in the way.
    static func prepare(path: String, sharedDirectory: Bool = false) throws {
        let parent = (path as NSString).deletingLastPathComponent
        var info = stat()
        if stat(parent, &info) != 0 {
            guard errno == ENOENT else { throw failure(parent, "cannot be examined") }
            guard mkdir(parent, 0o750) == 0 else {
                throw failure(parent, "cannot be created", remedy: "create it, or choose a socket.path in a writable directory")
            }
            // mkdir's mode is filtered by the umask; set it exactly.
            chmod(parent, 0o750)
        } else if info.st_mode & S_IFMT != S_IFDIR {
            throw SocketFileError(path: parent, message: "is not a directory")
        }
        do {
            try StrictModes.check(sharedDirectory ? (parent as NSString).deletingLastPathComponent : parent)
        } catch {
            throw SocketFileError(path: error.path,
                                  message: "\(error.problem), so another user could replace the agent's socket; \(error.remedy)")
        }
        guard access(parent, W_OK | X_OK) == 0 else {
            throw failure(parent, "is not writable by this process", remedy: "fix its permissions or choose another socket.path")
        }
        guard lstat(path, &info) == 0 else {
            guard errno == ENOENT else { throw failure(path, "cannot be examined") }
            return
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw SocketFileError(path: path, message: "exists and is not a socket; refusing to replace it (remove it or choose another socket.path)")
        }
        if isListening(path) {
            throw SocketFileError(path: path, message: "another process is listening on this socket (is an agent already running?)")
        }
        guard unlink(path) == 0 || errno == ENOENT else { throw failure(path, "the stale socket cannot be removed") }
    }

    /// Whether something accepts connections on the Unix socket at `path`.
    static func isListening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }

    /// Where to bind before the socket takes its place at `path`: inside a new private (0700)
    /// directory next to it, so that nobody can connect until the mode is set and the socket is
    /// renamed into place (the process umask is left alone: other threads create files too).
    /// Nil when that path would be too long for a Unix socket; then the socket is bound at `path`
    /// and its mode set right after.
    static func stagingPath(for path: String) throws -> String? {
        let parent = (path as NSString).deletingLastPathComponent
        let staged = parent + "/.credagent-XXXXXX/s"
        guard staged.utf8.count <= 107 else { return nil }
        var template = Array((parent + "/.credagent-XXXXXX").utf8CString)
        guard let directory = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw failure(parent, "cannot create a private directory to bind in")
        }
        return String(cString: directory) + "/s"
    }

    /// Sets the mode of the socket bound at `bound` exactly, moves it to `path` (removing the
    /// staging directory) and returns its inode, so that shutdown removes this socket and not a
    /// successor's.
    static func finish(bound: String, path: String, mode: UInt32) throws -> UInt64 {
        defer { if bound != path { discardStaging(bound) } }
        guard chmod(bound, mode_t(mode)) == 0 else { throw failure(path, "cannot set mode \(String(mode, radix: 8))") }
        if bound != path, rename(bound, path) != 0 { throw failure(path, "cannot move the socket into place") }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw failure(path, "cannot be examined after bind") }
        return UInt64(info.st_ino)
    }

    /// Removes a staging socket (if still there) and its private directory.
    static func discardStaging(_ bound: String) {
        unlink(bound)
        rmdir((bound as NSString).deletingLastPathComponent)
    }

    /// Removes the socket file if it is still the one with `inode`.
    static func remove(path: String, inode: UInt64) {
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_ino) == inode, info.st_mode & S_IFMT == S_IFSOCK else { return }
        unlink(path)
    }

    private static func failure(_ path: String, _ what: String, remedy: String? = nil) -> SocketFileError {
        let cause = String(cString: strerror(errno))
        return SocketFileError(path: path, message: "\(what): \(cause)" + (remedy.map { " (\($0))" } ?? ""))
    }
}

/// The process that is at the other end of a Unix socket connection, from `SO_PEERCRED`.
public struct PeerIdentity: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// Laid out exactly as Linux's `struct ucred { pid_t pid; uid_t uid; gid_t gid; }`. Glibc
/// declares `ucred` only under `_GNU_SOURCE`, which Swift's Glibc module does not define, so the
/// layout is restated here for `getsockopt(SO_PEERCRED)`.
struct UCred: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Who may read secrets: the configured uids and gids, or, when neither is configured, the uid the
/// agent runs as.
public struct PeerPolicy: Sendable, Equatable {
    public var allowUIDs: Set<UInt32>
    public var allowGIDs: Set<UInt32>
    public var agentUID: UInt32

    public init(allowUIDs: [UInt32], allowGIDs: [UInt32], agentUID: UInt32 = getuid()) {
        self.allowUIDs = Set(allowUIDs)
        self.allowGIDs = Set(allowGIDs)
        self.agentUID = agentUID
    }

    public func allows(_ peer: PeerIdentity) -> Bool {
        if allowUIDs.isEmpty, allowGIDs.isEmpty { return peer.uid == agentUID }
        return allowUIDs.contains(peer.uid) || allowGIDs.contains(peer.gid)
    }
}
