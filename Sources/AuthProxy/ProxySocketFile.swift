import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A proxy listener's problem with its directory or socket file, naming the path and the fix.
public struct ProxySocketError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// The filesystem side of a proxy's Unix socket: its directory (made 0750 when missing), a stale
/// socket left by a crashed agent, the socket's mode, and removal on stop.
enum ProxySocketFile {
    /// Makes `path` ready for bind.
    static func prepare(path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        var info = stat()
        if stat(directory, &info) != 0 {
            guard errno == ENOENT else { throw failure(directory, "cannot be examined") }
            guard mkdir(directory, 0o750) == 0 else {
                throw failure(directory, "cannot be created (create it, or choose another proxy.listen directory)")
            }
            // mkdir's mode is filtered by the umask; set it exactly.
            chmod(directory, 0o750)
        } else if info.st_mode & S_IFMT != S_IFDIR {
            throw ProxySocketError(path: directory, message: "is not a directory; proxy.listen names the directory the socket is made in")
        }
        guard lstat(path, &info) == 0 else {
            guard errno == ENOENT else { throw failure(path, "cannot be examined") }
            return
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ProxySocketError(path: path, message: "exists and is not a socket; refusing to replace it")
        }
        if isListening(path) {
            throw ProxySocketError(path: path, message: "another process is listening on this socket (a PostgreSQL server, or another agent?)")
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
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }

    /// Sets the socket's mode exactly and returns its inode.
    static func finish(path: String, mode: UInt32) throws -> UInt64 {
        guard chmod(path, mode_t(mode)) == 0 else { throw failure(path, "cannot set mode \(String(mode, radix: 8))") }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw failure(path, "cannot be examined after bind") }
        return UInt64(info.st_ino)
    }

    /// Removes the socket file if it is still the one with `inode`.
    static func remove(path: String, inode: UInt64) {
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_ino) == inode, info.st_mode & S_IFMT == S_IFSOCK else { return }
        unlink(path)
    }

    private static func failure(_ path: String, _ what: String) -> ProxySocketError {
        ProxySocketError(path: path, message: "\(what): \(String(cString: strerror(errno)))")
    }
}
