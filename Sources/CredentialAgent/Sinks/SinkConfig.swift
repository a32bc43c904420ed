import CredentialModel
import Foundation
import Yams

// The `sinks:` and `on_rotate:` keys of a credential, read apart from the rest of the credential
// so that they move with the credential model as it changes.
extension ConfigReader {
    /// The keys of a credential that this file reads.
    static let sinkKeys = ["sinks", "on_rotate"]

    /// The credential's sinks and hook from its mapping `map` at `path`.
    mutating func credentialSinks(_ map: KeyedNodes, _ path: String, kind: CredentialKind) -> CredentialSinks {
        var sinks = CredentialSinks()
        if let node = map["sinks"] {
            if case let .sequence(items) = node {
                for (index, item) in items.enumerated() {
                    let itemPath = "\(path).sinks[\(index)]"
                    guard let item = expanded(item, itemPath), let file = sinkFile(item, itemPath, kind: kind) else { continue }
                    if let earlier = sinks.files.firstIndex(where: { $0.path == file.path }) {
                        issue("\(itemPath).path", "'\(file.path)' is also the path of \(path).sinks[\(earlier)]; give each sink its own file")
                    }
                    sinks.files.append(file)
                }
            } else if !Self.isNull(node) {
                issue("\(path).sinks", "must be a list of files, e.g. [{path: /run/secrets/db.pgpass, format: pgpass}]")
            }
        }
        if let node = map["on_rotate"] { sinks.onRotate = rotationHook(node, "\(path).on_rotate") }
        return sinks
    }

    /// Reports a sink path already written by an earlier credential; `seen` maps each path to
    /// the key path of its sink.
    mutating func checkSinkPaths(_ credential: CredentialConfig, _ path: String, _ seen: inout [String: String]) {
        for (index, file) in credential.sinks.files.enumerated() {
            let keyPath = "\(path).sinks[\(index)]"
            if let earlier = seen[file.path], !earlier.hasPrefix("\(path).") {
                issue("\(keyPath).path", "'\(file.path)' is also the path of \(earlier); give each sink its own file")
            } else if seen[file.path] == nil {
                seen[file.path] = keyPath
            }
        }
    }

    private mutating func sinkFile(_ node: Node, _ path: String, kind: CredentialKind) -> SinkFile? {
        guard let map = mapping(node, path, allowed: ["path", "format", "mode", "owner", "group", "template", "shared_directory"]) else { return nil }
        let filePath = requiredString(map, "path", path)
        if let filePath {
            let name = (filePath as NSString).lastPathComponent
            if !filePath.hasPrefix("/") {
                issue("\(path).path", "'\(filePath)' is not an absolute path")
            } else if filePath.hasSuffix("/") || name == "." || name == ".." {
                issue("\(path).path", "'\(filePath)' names a directory; name the file to write, e.g. /run/secrets/db.pgpass")
            } else if filePath.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) {
                issue("\(path).path", "'\(filePath)' has a '.' or '..' component; write the path without them")
            }
        }
        let template = optionalString(map["template"], "\(path).template")
        var format: SinkFormat?
        if let name = requiredString(map, "format", path) {
            switch name {
            case "json": format = .json
            case "env": format = .env
            case "password": format = .password
            case "pgpass":
                format = .pgpass
                if kind != .postgres {
                    issue("\(path).format", "pgpass is for postgres credentials; use password, env, json or template for a \(kind.rawValue) credential")
                }
            case "template":
                if let template {
                    format = sinkTemplate(template, "\(path).template", kind: kind)
                } else if map["template"] == nil {
                    missing("\(path).template", "is missing; format template needs the text, e.g. template: \"{{password}}\"")
                }
            default:
                issue("\(path).format", "'\(name)' is not one of \(SinkFormat.names.joined(separator: ", "))")
            }
            if name != "template", template != nil {
                issue("\(path).template", "applies only to format template (this sink's format is \(name))")
            }
        }
        var mode: UInt32 = 0o600
        if let text = map["mode"].flatMap({ string($0, "\(path).mode") }) {
            if text.count >= 3, text.count <= 4, let value = UInt32(text, radix: 8), value <= 0o777 {
                mode = value
            } else {
                issue("\(path).mode", "'\(text)' is not an octal permission mode like \"0600\" (quote it)")
            }
        }
        let owner = map["owner"].flatMap { account($0, "\(path).owner") }
        let group = map["group"].flatMap { account($0, "\(path).group") }
        let shared = map["shared_directory"].flatMap { bool($0, "\(path).shared_directory") } ?? false
        guard let filePath, let format else { return nil }
        return SinkFile(path: filePath, format: format, mode: mode, owner: owner, group: group, sharedDirectory: shared)
    }

    private mutating func sinkTemplate(_ text: String, _ path: String, kind: CredentialKind) -> SinkFormat? {
        let template: SinkTemplate
        do {
            template = try SinkTemplate(parsing: text)
        } catch {
            issue(path, error.message)
            return nil
        }
        let unknown = template.fields.filter { !CredentialFields.isField($0, of: kind) }
        guard unknown.isEmpty else {
            let known = (CredentialFields.commonFields + CredentialFields.fields(of: kind)).joined(separator: ", ")
            let names = unknown.map { "{{\($0)}}" }.joined(separator: ", ")
            issue(path, "\(names) \(unknown.count == 1 ? "is not a field" : "are not fields") of a \(kind.rawValue) credential (fields: \(known))")
            return nil
        }
        return .template(template)
    }

    private mutating func account(_ node: Node, _ path: String) -> SinkAccount? {
        guard let text = string(node, path) else { return nil }
        if let id = UInt32(text) { return .id(id) }
        let valid = !text.isEmpty && text.utf8.count <= 64 && text.utf8.allSatisfy { $0 > 0x20 && $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: "/") }
        guard valid, text.utf8.first.map({ !(0x30...0x39).contains($0) && $0 != UInt8(ascii: "-") }) ?? false else {
            issue(path, "'\(text)' is neither a numeric id nor a user or group name")
            return nil
        }
        return .name(text)
    }

    private mutating func rotationHook(_ node: Node, _ path: String) -> RotationHook? {
        guard let map = mapping(node, path, allowed: ["signal", "pid_file", "command", "timeout"]) else { return nil }
        switch (map["signal"], map["command"]) {
        case (nil, nil):
            issue(path, "needs either signal and pid_file, or command")
            return nil
        case (_?, _?):
            issue(path, "has both signal and command; choose one")
            return nil
        case let (signalNode?, nil):
            if map["timeout"] != nil { issue("\(path).timeout", "applies only to command") }
            let signal = string(signalNode, "\(path).signal").flatMap { text -> (name: String, number: Int32)? in
                guard let signal = RotationHook.signal(named: text) else {
                    issue("\(path).signal", "'\(text)' is not one of \(RotationHook.signals.map(\.name).joined(separator: ", "))")
                    return nil
                }
                return signal
            }
            let pidFile = requiredString(map, "pid_file", path)
            if let pidFile, !pidFile.hasPrefix("/") { issue("\(path).pid_file", "'\(pidFile)' is not an absolute path") }
            guard let signal, let pidFile, pidFile.hasPrefix("/") else { return nil }
            return .signal(number: signal.number, name: signal.name, pidFile: pidFile)
        case let (nil, commandNode?):
            if map["pid_file"] != nil { issue("\(path).pid_file", "applies only to signal") }
            guard case let .sequence(items) = commandNode, !items.isEmpty else {
                issue("\(path).command", "must be a list: the program's absolute path and its arguments, e.g. [\"/usr/local/bin/reload\", \"--soft\"]")
                return nil
            }
            let argv = items.enumerated().compactMap { index, item in
                expanded(item, "\(path).command[\(index)]").flatMap { string($0, "\(path).command[\(index)]") }
            }
            guard argv.count == items.count else { return nil }
            guard argv[0].hasPrefix("/") else {
                issue("\(path).command[0]", "'\(argv[0])' is not an absolute path; give the program's full path (no shell runs the command)")
                return nil
            }
            let timeout = map["timeout"].flatMap { bounded(duration($0, "\(path).timeout"), "\(path).timeout", RotationHook.timeoutRange) }
            return .command(argv: argv, timeout: timeout ?? RotationHook.defaultTimeout)
        }
    }
}

extension CredentialConfig {
    /// This credential with `sinks` instead of its own: equal to another when only their sinks differ.
    func withSinks(_ sinks: CredentialSinks) -> CredentialConfig {
        var copy = self
        copy.sinks = sinks
        return copy
    }
}
