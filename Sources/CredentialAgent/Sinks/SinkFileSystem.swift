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

    public init(message: String) {
        self.message = message
    }
}

/// The file system side of sinks: atomic replacement, removal and the checks `config check`
/// makes. Every call blocks; the agent runs them on the blocking pool.
///
/// A sink's directory is reached from `/` one component at a time, never through a symbolic
/// link, and each directory on the way must be one that no uid but root and the agent's could
/// change (as ``StrictModes`` has it for the config file): owned by root or the agent's uid,
/// writable by neither group nor others, except that a directory above the sink's may be
/// writable by others with the sticky bit (as `/tmp`). The sink's own directory is exempt only
/// with `shared_directory`. The file is then created, renamed and removed relative to that open
/// directory, so a component swapped for a link after the check cannot redirect them.
public enum SinkFileSystem {
    private typealias group_t = Glibc.group
    /// `O_PATH` (Linux's generic value, x86_64's and arm64's), spelt out: the Glibc module Swift
    /// imports leaves it out. Opening a directory so needs only search permission on it.
    private static let openPath: Int32 = 0o10000000

    /// Replaces `file.path` with `content`: a temporary file in the same directory (created
    /// 0600), written in full, given its owner, group and mode, flushed to disk, renamed over the
    /// path, and the directory flushed. A reader opening the path sees the old file or the new
    /// one, whole; a failure leaves the old one and no temporary file.
    public static func write(_ content: Secret, to file: SinkFile) throws(SinkError) {
        let directoryPath = parent(of: file.path), name = baseName(of: file.path)
        guard let directory = try openDirectory(of: file) else {
            throw failure(ENOENT, "cannot create a file in \(directoryPath)")
        }
        defer { close(directory) }
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<8 where fd < 0 {
            temporary = ".\(name).credagent-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
            fd = openat(directory, temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            if fd < 0, errno != EEXIST { break }
        }
        guard fd >= 0 else {
            let code = errno
            throw failure(code, "cannot create a file in \(directoryPath)", notPermitted: notPermitted(in: directory, directoryPath))
        }
        let temporaryPath = (directoryPath as NSString).appendingPathComponent(temporary)
        var renamed = false
        defer {
            if !renamed { unlinkat(directory, temporary, 0) }
        }
        do {
            defer { close(fd) }
            let bytes = Array(content.reveal().utf8)
            var written = 0
            while written < bytes.count {
                let count = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { throw failure(errno, "cannot write \(temporaryPath)") }
                written += count
            }
            let uid = try file.owner.map { account throws(SinkError) in try resolve(account, group: false) }
            let gid = try file.group.map { account throws(SinkError) in try resolve(account, group: true) }
            if uid != nil || gid != nil, fchown(fd, uid ?? UInt32.max, gid ?? UInt32.max) != 0 {
                let what = [uid.map { "owner \($0)" }, gid.map { "group \($0)" }].compactMap { $0 }.joined(separator: " and ")
                throw failure(errno, "cannot give \(file.path) to \(what)",
                              notPermitted: "only root may give a file to another user, or to a group the agent is not in: run the agent as root or change owner/group")
            }
            // After the chown, which may clear set-id bits.
            guard fchmod(fd, mode_t(file.mode)) == 0 else { throw failure(errno, "cannot set the mode of \(temporaryPath)") }
            guard fsync(fd) == 0 else { throw failure(errno, "cannot flush \(temporaryPath)") }
        }
        guard renameat(directory, temporary, directory, name) == 0 else {
            let code = errno
            throw failure(code, "cannot rename \(temporaryPath) to \(file.path)", notPermitted: notPermitted(in: directory, directoryPath, replacing: name))
        }
        renamed = true
        syncDirectory(directory)
    }

    /// Removes `file` (nothing to do when it or its directory is already gone) and flushes its
    /// directory.
    public static func remove(_ file: SinkFile) throws(SinkError) {
        guard let directory = try openDirectory(of: file) else { return }
        defer { close(directory) }
        guard unlinkat(directory, baseName(of: file.path), 0) == 0 || errno == ENOENT else {
            let code = errno
            throw failure(code, "cannot remove \(file.path)", notPermitted: notPermitted(in: directory, parent(of: file.path), replacing: baseName(of: file.path)))
        }
        syncDirectory(directory)
    }

    /// What would keep `file` from being written, checked without writing it: its directory
    /// missing, not a directory, reached through a symbolic link, one that another uid could
    /// change, read-only or not writable by the agent, an owner or group name the system does not
    /// know, or an owner the agent may not give files to.
    public static func problems(_ file: SinkFile) -> [String] {
        var problems: [String] = []
        let directoryPath = parent(of: file.path)
        do {
            if let directory = try openDirectory(of: file) {
                defer { close(directory) }
                var volume = statvfs()
                if fstatvfs(directory, &volume) == 0, volume.f_flag & UInt(ST_RDONLY) != 0 {
                    problems.append(failure(EROFS, "directory \(directoryPath) cannot be written").message)
                } else if faccessat(directory, ".", W_OK | X_OK, 0) != 0 {
                    problems.append(failure(errno, "directory \(directoryPath) cannot be written").message)
                }
                var target = stat()
                if fstatat(directory, baseName(of: file.path), &target, AT_SYMLINK_NOFOLLOW) == 0, target.st_mode & S_IFMT == S_IFDIR {
                    problems.append("\(file.path) is a directory; name a file")
                }
            } else {
                problems.append(failure(ENOENT, "directory \(directoryPath) cannot be used").message)
            }
        } catch {
            problems.append(error.message)
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

    /// The directory of `file` opened (`O_PATH`) from `/` component by component, without
    /// following a symbolic link, each directory checked on the way (see the type's rules); nil
    /// when a component does not exist. The caller closes it.
    private static func openDirectory(of file: SinkFile) throws(SinkError) -> Int32? {
        let components = parent(of: file.path).split(separator: "/").map(String.init)
        var fd = open("/", openPath | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(errno, "directory / cannot be used") }
        var path = ""
        do throws(SinkError) {
            try check(fd, "/", isSinkDirectory: components.isEmpty, file)
            for (index, name) in components.enumerated() {
                path += "/" + name
                let next = openat(fd, name, openPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard next >= 0 else {
                    let code = errno
                    var info = stat()
                    if fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFLNK {
                        let real = realpath(parent(of: file.path), nil).map { resolved in
                            defer { free(resolved) }
                            return ", " + (String(cString: resolved) as NSString).appendingPathComponent(baseName(of: file.path))
                        } ?? ""
                        throw SinkError(message: "\(path) is a symbolic link, which the agent does not follow in a sink's path (whoever can change the link could send the file anywhere); name the sink by the path it resolves to\(real)")
                    }
                    guard code != ENOENT else {
                        close(fd)
                        return nil
                    }
                    throw failure(code, "directory \(path) cannot be used")
                }
                close(fd)
                fd = next
                try check(fd, path, isSinkDirectory: index == components.count - 1, file)
            }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Checks the open directory `fd` at `path` on the way to `file` (see the type's rules).
    private static func check(_ fd: Int32, _ path: String, isSinkDirectory: Bool, _ file: SinkFile) throws(SinkError) {
        if isSinkDirectory, file.sharedDirectory { return }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(errno, "directory \(path) cannot be examined") }
        do throws(UnsafePathError) {
            try StrictModes.checkEntry(path, info, trusted: geteuid(), stickyExempt: !isSinkDirectory)
        } catch {
            let shared = isSinkDirectory ? " (or, when other users write it on purpose, set shared_directory: true on the sink)" : ""
            throw SinkError(message: "directory \(path) \(error.problem), so another user could replace the sink or redirect the agent's writes; \(error.remedy)\(shared)")
        }
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

    /// Flushes the open directory `directory` (an `O_PATH` descriptor cannot be flushed itself).
    private static func syncDirectory(_ directory: Int32) {
        let fd = openat(directory, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    static func parent(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty ? "/" : parent
    }

    static func baseName(of path: String) -> String { (path as NSString).lastPathComponent }

    /// Why creating, replacing or removing `name` in the open `directory` (at `path`) was not
    /// permitted (EPERM): a sticky directory and a file of another uid, or else, most likely, an
    /// immutable or append-only file or directory.
    static func notPermitted(in directory: Int32, _ path: String, replacing name: String? = nil) -> String {
        var folder = stat(), target = stat()
        if let name, fstat(directory, &folder) == 0, folder.st_mode & S_ISVTX != 0,
           fstatat(directory, name, &target, AT_SYMLINK_NOFOLLOW) == 0, target.st_uid != geteuid(), folder.st_uid != geteuid() {
            let file = (path as NSString).appendingPathComponent(name)
            return "the directory is sticky and \(file) belongs to uid \(target.st_uid): only that uid, the directory's owner (uid \(folder.st_uid)) or root may replace or remove it; have one of them remove it, or choose another path"
        }
        let what = name.map { "\((path as NSString).appendingPathComponent($0)) or \(path)" } ?? path
        return "\(what) is probably immutable or append-only (lsattr -d shows 'i' or 'a'): clear the attribute (chattr -i -a) or choose another path"
    }

    /// `what`, the system's reason and, for the usual causes, the fix; `notPermitted` is the fix
    /// for EPERM, which means something else for each operation.
    private static func failure(_ code: Int32, _ what: String, notPermitted: @autoclosure () -> String? = nil) -> SinkError {
        let reason = String(cString: strerror(code))
        let fix = switch code {
        case ENOENT: "; create the directory (or mount the volume) or change the sink's path"
        case ENOTDIR: "; a part of the path is not a directory: change the sink's path"
        case EROFS: "; the file system is read-only: mount it writable or choose a path on a writable one"
        case EACCES: "; give the agent (uid \(geteuid())) write access to the directory or choose another path"
        case EPERM: notPermitted().map { "; " + $0 } ?? ""
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
