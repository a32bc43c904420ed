import CloudAuth
import CredentialModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a sink file could not be written, removed or checked, or a hook's program started; the
/// message names the path and what to change, never a file's content.
public struct SinkError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The file system side of sinks: atomic replacement, removal and the checks `config check`
/// makes. Every call blocks; the agent runs them on the blocking pool.
public enum SinkFileSystem {
    private typealias group_t = Glibc.group

    /// Replaces `file.path` with `content`: a temporary file in the same directory (created
    /// 0600), written in full, given its owner, group and mode, flushed to disk, renamed over the
    /// path, and the directory flushed. A reader opening the path sees the old file or the new
    /// one, whole; a failure leaves the old one and no temporary file.
    public static func write(_ content: Secret, to file: SinkFile) throws(SinkError) {
        let directory = parent(of: file.path)
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<8 where fd < 0 {
            temporary = "\(directory)/.\(baseName(of: file.path)).credagent-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            if fd < 0, errno != EEXIST { break }
        }
        guard fd >= 0 else { throw failure(errno, "cannot create a file in \(directory)", file.path) }
        var renamed = false
        defer {
            if !renamed { unlink(temporary) }
        }
        do {
            defer { close(fd) }
            let bytes = Array(content.reveal().utf8)
            var written = 0
            while written < bytes.count {
                let count = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { throw failure(errno, "cannot write \(temporary)", file.path) }
                written += count
            }
            let uid = try file.owner.map { account throws(SinkError) in try resolve(account, group: false) }
            let gid = try file.group.map { account throws(SinkError) in try resolve(account, group: true) }
            if uid != nil || gid != nil, fchown(fd, uid ?? UInt32.max, gid ?? UInt32.max) != 0 {
                let what = [uid.map { "owner \($0)" }, gid.map { "group \($0)" }].compactMap { $0 }.joined(separator: " and ")
                throw failure(errno, "cannot give \(file.path) to \(what)", file.path)
            }
            // After the chown, which may clear set-id bits.
            guard fchmod(fd, mode_t(file.mode)) == 0 else { throw failure(errno, "cannot set the mode of \(temporary)", file.path) }
            guard fsync(fd) == 0 else { throw failure(errno, "cannot flush \(temporary)", file.path) }
        }
        guard rename(temporary, file.path) == 0 else { throw failure(errno, "cannot rename \(temporary) to \(file.path)", file.path) }
        renamed = true
        syncDirectory(directory)
    }

    /// Removes `path` (nothing to do when it is already gone) and flushes its directory.
    public static func remove(_ path: String) throws(SinkError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw failure(errno, "cannot remove \(path)", path) }
        syncDirectory(parent(of: path))
    }

    /// What would keep `file` from being written, checked without writing it: its directory
    /// missing, not a directory, read-only or not writable by the agent, an owner or group name
    /// the system does not know, or an owner the agent may not give files to.
    public static func problems(_ file: SinkFile) -> [String] {
        var problems: [String] = []
        let directory = parent(of: file.path)
        var status = stat()
        if stat(directory, &status) != 0 {
            problems.append(failure(errno, "directory \(directory) cannot be used", file.path).message)
        } else if status.st_mode & S_IFMT != S_IFDIR {
            problems.append("\(directory) is not a directory; choose a path in a directory")
        } else {
            var volume = statvfs()
            if statvfs(directory, &volume) == 0, volume.f_flag & UInt(ST_RDONLY) != 0 {
                problems.append(failure(EROFS, "directory \(directory) cannot be written", file.path).message)
            } else if access(directory, W_OK | X_OK) != 0 {
                problems.append(failure(errno, "directory \(directory) cannot be written", file.path).message)
            }
        }
        var target = stat()
        if lstat(file.path, &target) == 0, target.st_mode & S_IFMT == S_IFDIR {
            problems.append("\(file.path) is a directory; name a file")
        }
        do {
            if let owner = file.owner, try resolve(owner, group: false) != geteuid(), geteuid() != 0 {
                problems.append("owner \(owner): only root may give files to another user; run the agent as root or leave owner out")
            }
            if let group = file.group { _ = try resolve(group, group: true) }
        } catch {
            problems.append(error.message)
        }
        return problems
    }

    /// The id of `account`: a number as it is, a name looked up in the user or group database.
    static func resolve(_ account: SinkAccount, group: Bool) throws(SinkError) -> UInt32 {
        switch account {
        case let .id(id): return id
        case let .name(name):
            // The reentrant lookups: keepers write on several threads at once.
            var buffer = [CChar](repeating: 0, count: 16384)
            var id: UInt32?
            if group {
                var entry = group_t(), result: UnsafeMutablePointer<group_t>?
                if getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil { id = entry.gr_gid }
            } else {
                var entry = passwd(), result: UnsafeMutablePointer<passwd>?
                if getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil { id = entry.pw_uid }
            }
            guard let id else {
                throw SinkError(message: "\(group ? "group" : "owner") '\(name)' is not a known \(group ? "group" : "user") on this system; use a numeric id or create it")
            }
            return id
        }
    }

    private static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    static func parent(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty ? "/" : parent
    }

    static func baseName(of path: String) -> String { (path as NSString).lastPathComponent }

    /// `what`, the system's reason and, for the usual causes, the fix.
    private static func failure(_ code: Int32, _ what: String, _ path: String) -> SinkError {
        let reason = String(cString: strerror(code))
        let fix = switch code {
        case ENOENT: "; create the directory (or mount the volume) or change the sink's path"
        case ENOTDIR: "; a part of the path is not a directory: change the sink's path"
        case EROFS: "; the file system is read-only: mount it writable or choose a path on a writable one"
        case EACCES: "; give the agent (uid \(geteuid())) write access to the directory or choose another path"
        case EPERM: "; only root may give a file to another user or to a group it is not in: run the agent as root or change owner/group"
        case ENOSPC, EDQUOT: "; free some space"
        default: ""
        }
        return SinkError(message: "\(what): \(reason)\(fix)")
    }
}

extension AgentConfig {
    /// What would keep the sinks of this config from being written on this machine (see
    /// ``SinkFileSystem/problems(_:)``), by key path. `config check` reports them; the agent
    /// starts anyway and reports each failed write.
    public func sinkIssues() -> [ConfigIssue] {
        credentials.enumerated().flatMap { index, credential in
            credential.sinks.files.enumerated().flatMap { sinkIndex, file in
                SinkFileSystem.problems(file).map { ConfigIssue(path: "credentials[\(index)].sinks[\(sinkIndex)]", message: $0) }
            }
        }
    }
}
