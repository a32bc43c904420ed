import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file or directory that a uid other than the agent's and root could change, found by
/// ``StrictModes``: the path, what is wrong and the command that fixes it.
public struct UnsafePathError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file or directory at fault (an ancestor of the path checked, or that path itself).
    public var path: String
    /// What is wrong with it, e.g. `is writable by every user (mode 0777)`.
    public var problem: String
    /// What to do about it, e.g. `chmod o-w /run/credagent`.
    public var remedy: String

    public var description: String { "\(path): \(problem); \(remedy)" }
}

/// The ownership rules the agent applies to what it trusts (its config file, its socket's
/// directory), as sshd's `StrictModes` does for `authorized_keys`: the path itself and every
/// directory above it, up to `/`, must be owned by root or the agent's uid and writable by no one
/// else. A directory above the path checked may be writable by others when it has the sticky bit
/// (as `/tmp`): others can then neither remove nor rename the entries they do not own.
/// Symbolic links are followed: the rules apply to the path they resolve to, and to the
/// directories above the path as written.
public enum StrictModes {
    /// Throws when `path` or a directory above it may be changed by a uid other than `trusted`
    /// and root. `info` is the already opened file's status, so that the file checked is the
    /// one read (nil: `path` is examined here).
    public static func check(_ path: String, trusting trusted: uid_t = getuid(), info: stat? = nil) throws(UnsafePathError) {
        guard let resolved = realpath(path, nil) else {
            throw UnsafePathError(path: path, problem: "cannot be examined: \(String(cString: strerror(errno)))",
                                  remedy: "check that it exists and that every directory above it is searchable")
        }
        let real = String(cString: resolved)
        free(resolved)
        var target = stat()
        if let info { target = info } else if stat(real, &target) != 0 {
            throw UnsafePathError(path: real, problem: "cannot be examined: \(String(cString: strerror(errno)))",
                                  remedy: "check its permissions")
        }
        try checkEntry(real, target, trusted: trusted, stickyExempt: false)
        // The directories above the path as written too: a symbolic link in a directory others
        // may write could be pointed elsewhere.
        let written = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        try checkDirectories(above: real, trusted: trusted)
        if written != real { try checkDirectories(above: written, trusted: trusted) }
    }

    /// Checks every directory above `path`, up to `/`.
    private static func checkDirectories(above path: String, trusted: uid_t) throws(UnsafePathError) {
        var directory = (path as NSString).deletingLastPathComponent
        while true {
            var info = stat()
            guard stat(directory, &info) == 0 else {
                throw UnsafePathError(path: directory, problem: "cannot be examined: \(String(cString: strerror(errno)))",
                                      remedy: "check its permissions")
            }
            try checkEntry(directory, info, trusted: trusted, stickyExempt: true)
            if directory == "/" || directory.isEmpty { break }
            directory = (directory as NSString).deletingLastPathComponent
        }
    }

    /// Checks one file or directory at `path` whose status is `info`: owned by root or
    /// `trusted`, writable by neither group nor others (a directory with the sticky bit may be,
    /// when `stickyExempt`). Sinks check each directory of their path with it.
    static func checkEntry(_ path: String, _ info: stat, trusted: uid_t, stickyExempt: Bool) throws(UnsafePathError) {
        let owner = info.st_uid
        let mode = info.st_mode & 0o7777
        let modeText = "mode " + String(format: "%04o", mode)
        guard owner == 0 || owner == trusted else {
            let who = trusted == 0 ? "root" : "root or uid \(trusted)"
            throw UnsafePathError(path: path, problem: "is owned by uid \(owner), which could change it",
                                  remedy: "make it owned by \(who) (chown \(trusted) \(path))")
        }
        let sticky = info.st_mode & S_ISVTX != 0 && info.st_mode & S_IFMT == S_IFDIR
        if stickyExempt, sticky { return }
        if mode & S_IWOTH != 0 {
            throw UnsafePathError(path: path, problem: "is writable by every user (\(modeText))", remedy: "chmod o-w \(path)")
        }
        if mode & S_IWGRP != 0 {
            throw UnsafePathError(path: path, problem: "is writable by its group, gid \(info.st_gid) (\(modeText))",
                                  remedy: "chmod g-w \(path)")
        }
    }
}
