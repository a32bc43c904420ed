import ArgumentParser

/// `credagent version`: the version, commit and build kind (`credagent --version` prints the
/// same on one line).
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Show the version, commit and build of this binary.")

    func run() {
        print(BuildInfo.current.lines)
    }
}
