import CloudAuth
import CredentialModel
import Foundation
import Testing
@testable import CredentialAgent
#if canImport(Glibc)
import Glibc
#endif

/// Runs `chattr` with `arguments`; true when it succeeded.
@discardableResult
private func chattr(_ arguments: [String]) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/chattr")
    process.arguments = arguments
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}

/// A new directory under the temporary directory (mode 0755), removed by `body`'s end.
private func withDirectory(_ label: String, _ body: (String) throws -> Void) throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("credagent-\(label)-\(UUID())").standardizedFileURL.path
    #expect(mkdir(directory, 0o755) == 0)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try body(directory)
}

@Suite struct SinkFileSystemTests {
    /// Whether the temporary directory's file system takes `chattr +i` from this process (root
    /// on ext4, xfs, btrfs...).
    static let canMakeImmutable: Bool = {
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("credagent-chattr-\(UUID())").path
        guard FileManager.default.createFile(atPath: probe, contents: nil) else { return false }
        defer {
            chattr(["-i", probe])
            unlink(probe)
        }
        return chattr(["+i", probe])
    }()

    @Test(.enabled(if: canMakeImmutable, "needs chattr +i: root on a file system with attributes"))
    func aFileThatCannotBeReplacedOrRemovedIsExplainedAsSuch() throws {
        try withDirectory("sink-immutable") { directory in
            let file = SinkFile(path: directory + "/db.pw", format: .password)
            try SinkFileSystem.write(Secret("one"), to: file)
            #expect(chattr(["+i", file.path]))
            defer { chattr(["-i", file.path]) }
            let explanation = "Operation not permitted; \(file.path) or \(directory) is probably immutable or append-only (lsattr -d shows 'i' or 'a'): clear the attribute (chattr -i -a) or choose another path"
            do throws(SinkError) {
                try SinkFileSystem.write(Secret("two"), to: file)
                Issue.record("an immutable file cannot be replaced")
            } catch {
                #expect(error.message.hasPrefix("cannot rename \(directory)/.db.pw.credagent-"), "\(error.message)")
                #expect(error.message.hasSuffix(" to \(file.path): \(explanation)"), "\(error.message)")
            }
            do throws(SinkError) {
                try SinkFileSystem.remove(file)
                Issue.record("an immutable file cannot be removed")
            } catch {
                #expect(error.message == "cannot remove \(file.path): \(explanation)")
            }
            #expect(try String(contentsOfFile: file.path, encoding: .utf8) == "one")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory)
            #expect(leftovers == ["db.pw"], "no temporary file is left")
        }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give files to other uids"))
    func aStickyDirectoryAndAFileOfAnotherUIDAreNamed() throws {
        try withDirectory("sink-sticky") { directory in
            let path = directory + "/db.pw"
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            #expect(chown(path, 4321, 4321) == 0)
            #expect(chown(directory, 4322, 4322) == 0 && chmod(directory, 0o1777) == 0)
            let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { close(fd) }
            #expect(SinkFileSystem.notPermitted(in: fd, directory, replacing: "db.pw")
                == "the directory is sticky and \(path) belongs to uid 4321: only that uid, the directory's owner (uid 4322) or root may replace or remove it; have one of them remove it, or choose another path")
            // Not sticky: something else forbids it.
            #expect(chmod(directory, 0o777) == 0)
            #expect(SinkFileSystem.notPermitted(in: fd, directory, replacing: "db.pw").contains("is probably immutable or append-only"))
        }
    }
}
