import CloudAuth
import CredentialModel
import Foundation
import Yams

/// Turns YAML text into an ``AgentConfig``, refusing unknown keys at every level and reporting
/// every problem with its key path, not just the first.
///
/// The YAML is walked as a node tree rather than decoded with `Codable`: a decoder stops at the
/// first error and cannot tell an unknown key from a missing one, and both are needed here.
///
/// Scalar values (never keys) may hold `${NAME}` and `${NAME:-default}` references to
/// `environment` (see ``EnvironmentReferences``). They are expanded after the YAML is parsed, so a
/// variable cannot add structure, and before the value is checked, so `port: ${PG_PORT}` must
/// expand to a port.
public enum ConfigParser {
    /// Parses `yaml`; `file` names its origin in errors. Throws ``ConfigError``.
    public static func parse(yaml: String, file: String,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AgentConfig {
        let root: Node?
        do {
            // The basic resolver: every scalar stays text, which the parser reads itself. The
            // default one types plain scalars with NSRegularExpression, whose engine (ICU) is
            // then loaded into the agent for the sake of the config alone.
            root = try Yams.compose(yaml: yaml, .basic)
        } catch let YamlError.duplicatedKeysInMapping(duplicates, context) {
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            throw ConfigError(file: file, issues: [ConfigIssue(
                path: "", message: "line \(context.mark.line): the mapping has the key \(keys) more than once")])
        } catch let error as YamlError {
            throw ConfigError(file: file, issues: [ConfigIssue(path: "", message: "is not valid YAML: \(describe(error))")])
        }
        guard let root else {
            throw ConfigError(file: file, issues: [ConfigIssue(path: "", message: "is empty; it needs at least a credentials list")])
        }
        var reader = ConfigReader(environment: environment)
        let config = reader.agentConfig(root)
        guard reader.issues.isEmpty, let config else { throw ConfigError(file: file, issues: reader.issues) }
        return config
    }

    /// libyaml's problem and position, without the snippet of the file Yams appends.
    private static func describe(_ error: YamlError) -> String {
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            let during = context.map { " \($0.text)" } ?? ""
            return "line \(mark.line), column \(mark.column): \(problem)\(during)"
        default:
            return error.description.split(separator: "\n").first.map(String.init) ?? "unreadable"
        }
    }
}

/// Walks the node tree, collecting issues; each accessor returns nil when the value is unusable.
struct ConfigReader {
    /// What `${NAME}` references in values expand from.
    let environment: [String: String]
    private(set) var issues: [ConfigIssue] = []
    /// The text as written of every value that held references, by key path: issues at that path
    /// show it next to the path.
    private var expandedFrom: [String: String] = [:]
    /// Key paths whose references could not be expanded (already reported).
    private var unexpandable: Set<String> = []

    init(environment: [String: String]) {
        self.environment = environment
    }

    mutating func issue(_ path: String, _ message: String) {
        issues.append(ConfigIssue(path: path, message: message, expandedFrom: expandedFrom[path]))
    }

    // MARK: Sections

    mutating func agentConfig(_ root: Node) -> AgentConfig? {
        guard let top = mapping(root, "", allowed: ["socket", "refresh", "aws", "azure", "gcp", "credentials"]) else {
            return nil
        }
        var config = AgentConfig(socket: SocketConfig(), refresh: RefreshConfig(), aws: AWSSettings(),
                                 azure: AzureSettings(), gcp: GCPSettings(), credentials: [])
        if let node = top["socket"] { config.socket = socket(node) }
        if let node = top["refresh"] { config.refresh = refresh(node) }
        if let node = top["aws"] { config.aws = aws(node) }
        if let node = top["azure"] { config.azure = azure(node) }
        if let node = top["gcp"] { config.gcp = gcp(node) }
        if let node = top["credentials"] {
            config.credentials = credentials(node)
        } else {
            issue("credentials", "is missing; list at least one credential")
        }
        return config
    }

    mutating func socket(_ node: Node) -> SocketConfig {
        var config = SocketConfig()
        guard let map = mapping(node, "socket", allowed: ["path", "mode", "allow", "max_connections", "max_foreign_connections",
                                                          "idle_timeout", "request_timeout", "shared_directory"]) else { return config }
        if let path = map["path"].flatMap({ string($0, "socket.path") }) {
            if path.hasPrefix("/") { config.path = path } else { issue("socket.path", "'\(path)' is not an absolute path") }
            if path.utf8.count > 107 { issue("socket.path", "is \(path.utf8.count) bytes long; a Unix socket path may have at most 107") }
        }
        if let text = map["mode"].flatMap({ string($0, "socket.mode") }) {
            if text.count >= 3, text.count <= 4, let mode = UInt32(text, radix: 8), mode <= 0o777 {
                config.mode = mode
            } else {
                issue("socket.mode", "'\(text)' is not an octal permission mode like \"0660\"")
            }
        }
        if let allowNode = map["allow"], let allow = mapping(allowNode, "socket.allow", allowed: ["uids", "gids"]) {
            config.allowUIDs = allow["uids"].map { ids($0, "socket.allow.uids") } ?? []
            config.allowGIDs = allow["gids"].map { ids($0, "socket.allow.gids") } ?? []
        }
        if let text = map["max_connections"].flatMap({ string($0, "socket.max_connections") }) {
            if let value = Int(text), (1...65536).contains(value) { config.maxConnections = value }
            else { issue("socket.max_connections", "\(text) is not a number of connections (1-65536)") }
        }
        if let text = map["max_foreign_connections"].flatMap({ string($0, "socket.max_foreign_connections") }) {
            if let value = Int(text), value >= 0, value < config.maxConnections {
                config.maxForeignConnections = value
            } else {
                issue("socket.max_foreign_connections", "\(text) is not a number of connections from 0 to max_connections - 1 "
                      + "(\(config.maxConnections - 1)); peers allowed to read secrets need at least one place")
            }
        }
        if let value = map["shared_directory"].flatMap({ bool($0, "socket.shared_directory") }) {
            config.sharedDirectory = value
        }
        if let value = map["idle_timeout"].flatMap({ bounded(duration($0, "socket.idle_timeout"), "socket.idle_timeout", .seconds(1) ... .seconds(86_400)) }) {
            config.idleTimeout = value
        }
        if let value = map["request_timeout"].flatMap({ bounded(duration($0, "socket.request_timeout"), "socket.request_timeout", .seconds(1) ... .seconds(3600)) }) {
            config.requestTimeout = value
        }
        return config
    }

    /// `value` if within `range`, else an issue naming the range.
    mutating func bounded(_ value: Duration?, _ path: String, _ range: ClosedRange<Duration>) -> Duration? {
        guard let value else { return nil }
        guard range.contains(value) else {
            issue(path, "\(DurationText.format(value)) is not between \(DurationText.format(range.lowerBound)) and \(DurationText.format(range.upperBound))")
            return nil
        }
        return value
    }

    mutating func refresh(_ node: Node) -> RefreshConfig {
        var config = RefreshConfig()
        guard let map = mapping(node, "refresh", allowed: ["min_remaining", "lifetime_fraction", "jitter", "backoff",
                                                           "client_min_interval"]) else {
            return config
        }
        if let value = map["min_remaining"].flatMap({ duration($0, "refresh.min_remaining") }) { config.minRemaining = value }
        if let value = map["lifetime_fraction"].flatMap({ number($0, "refresh.lifetime_fraction") }) {
            if value > 0, value < 1 { config.lifetimeFraction = value }
            else { issue("refresh.lifetime_fraction", "\(value) is not a fraction between 0 and 1 (exclusive)") }
        }
        if let value = map["jitter"].flatMap({ number($0, "refresh.jitter") }) {
            if value >= 0, value <= 0.5 { config.jitter = value }
            else { issue("refresh.jitter", "\(value) is not between 0 and 0.5") }
        }
        if let backoffNode = map["backoff"], let backoff = mapping(backoffNode, "refresh.backoff", allowed: ["initial", "max"]) {
            var initialValid = true
            if let value = backoff["initial"].flatMap({ duration($0, "refresh.backoff.initial") }) {
                if value >= RefreshConfig.minimumBackoff {
                    config.backoffInitial = value
                } else {
                    initialValid = false
                    issue("refresh.backoff.initial", "\(DurationText.format(value)) is less than \(DurationText.format(RefreshConfig.minimumBackoff)); a failing endpoint would be retried in a tight loop")
                }
            }
            if let value = backoff["max"].flatMap({ duration($0, "refresh.backoff.max") }) { config.backoffMax = value }
            if initialValid, config.backoffMax < config.backoffInitial {
                issue("refresh.backoff.max", "\(DurationText.format(config.backoffMax)) is less than backoff.initial (\(DurationText.format(config.backoffInitial)))")
            }
        }
        if let value = map["client_min_interval"].flatMap({ duration($0, "refresh.client_min_interval") }) {
            if value <= RefreshConfig.maximumClientMinInterval { config.clientMinInterval = value }
            else { issue("refresh.client_min_interval", "\(DurationText.format(value)) is more than \(DurationText.format(RefreshConfig.maximumClientMinInterval)); clients would be answered with a secret that old") }
        }
        return config
    }

    mutating func aws(_ node: Node) -> AWSSettings {
        var settings = AWSSettings()
        guard let map = mapping(node, "aws", allowed: ["region", "assume_role_arn", "sts_endpoint", "imds_endpoint", "profile"]) else {
            return settings
        }
        settings.region = optionalString(map["region"], "aws.region")
        settings.assumeRoleARN = optionalString(map["assume_role_arn"], "aws.assume_role_arn")
        if let arn = settings.assumeRoleARN, !arn.hasPrefix("arn:") {
            issue("aws.assume_role_arn", "'\(arn)' is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        }
        settings.stsEndpoint = url(map["sts_endpoint"], "aws.sts_endpoint")
        settings.imdsEndpoint = url(map["imds_endpoint"], "aws.imds_endpoint")
        settings.profile = optionalString(map["profile"], "aws.profile")
        return settings
    }

    mutating func azure(_ node: Node) -> AzureSettings {
        var settings = AzureSettings()
        guard let map = mapping(node, "azure", allowed: ["client_id", "tenant_id", "imds_endpoint"]) else { return settings }
        settings.clientID = optionalString(map["client_id"], "azure.client_id")
        settings.tenantID = optionalString(map["tenant_id"], "azure.tenant_id")
        settings.imdsEndpoint = url(map["imds_endpoint"], "azure.imds_endpoint")
        return settings
    }

    mutating func gcp(_ node: Node) -> GCPSettings {
        var settings = GCPSettings()
        guard let map = mapping(node, "gcp", allowed: ["service_account", "key_file", "metadata_host"]) else { return settings }
        if let account = optionalString(map["service_account"], "gcp.service_account") { settings.serviceAccount = account }
        settings.keyFile = optionalString(map["key_file"], "gcp.key_file")
        settings.metadataHost = optionalString(map["metadata_host"], "gcp.metadata_host")
        if let host = settings.metadataHost, host.contains("/") {
            issue("gcp.metadata_host", "'\(host)' must be host[:port], without a scheme or path")
        }
        return settings
    }

    // MARK: Credentials

    /// Keys every credential has, and the extra keys each kind accepts.
    static let commonKeys = ["name", "kind", "provider"]
    static let kindKeys: [CredentialKind: [String]] = [
        .postgres: ["host", "port", "user", "database", "sslmode", "ca_file", "resource", "proxy"],
        .redis: ["host", "port", "user", "tls", "ca_file", "resource", "cache_name", "serverless", "engine", "proxy"],
        .vault: ["method", "address", "mount", "role", "server_id", "audience", "namespace", "ca_file", "tls_server_name",
                 "revoke_on_shutdown", "proxy"],
    ]

    mutating func credentials(_ node: Node) -> [CredentialConfig] {
        guard case let .sequence(sequence) = node else {
            issue("credentials", "must be a list of credentials (lines starting with '- ')")
            return []
        }
        if sequence.isEmpty { issue("credentials", "is empty; list at least one credential") }
        var result: [CredentialConfig] = []
        var firstIndexByName: [String: Int] = [:]
        var sinkPaths: [String: String] = [:]
        for (index, item) in sequence.enumerated() {
            guard let (name, credential) = credential(item, "credentials[\(index)]") else { continue }
            if let first = firstIndexByName[name] {
                issue("credentials[\(index)].name", "'\(name)' is already used by credentials[\(first)]; names must be unique")
            } else {
                firstIndexByName[name] = index
            }
            if let credential {
                checkSinkPaths(credential, "credentials[\(index)]", &sinkPaths)
                result.append(credential)
            }
        }
        return result
    }

    /// The credential at `path` with its name as written; nil without a name, kind and provider
    /// (a credential that has them but is otherwise invalid still names itself, for the
    /// uniqueness check).
    mutating func credential(_ node: Node, _ path: String) -> (name: String, credential: CredentialConfig?)? {
        guard let map = mapping(node, path, allowed: nil) else { return nil }
        let name = requiredString(map, "name", path)
        if let name, !CredentialName.isValid(name) {
            issue("\(path).name", "'\(name)' is not a valid name: \(CredentialName.rule)")
        }
        let kind = requiredString(map, "kind", path).flatMap { choice($0, CredentialKind.self, "\(path).kind") }
        let provider = requiredString(map, "provider", path).flatMap { choice($0, CredentialProvider.self, "\(path).provider") }
        guard let name, let kind, let provider else {
            // Without kind the allowed keys are unknown; still report keys no credential has.
            let known = Set(Self.commonKeys + Self.kindKeys.values.flatMap { $0 } + Self.sinkKeys)
            for key in map.keys where !known.contains(key) { unknownKey("\(path).\(key)", allowed: known.sorted()) }
            return nil
        }
        let allowed = Self.commonKeys + (Self.kindKeys[kind] ?? []) + Self.sinkKeys
        for key in map.keys where !allowed.contains(key) {
            issue("\(path).\(key)", "is not a key of a \(kind.rawValue) credential (allowed: \(allowed.joined(separator: ", ")))")
        }
        let caFile = optionalString(map["ca_file"], "\(path).ca_file")
        let target: CredentialTarget? = switch kind {
        case .postgres: postgres(map, path, provider, caFile: caFile).map(CredentialTarget.postgres)
        case .redis: redis(map, path, provider, caFile: caFile).map(CredentialTarget.redis)
        case .vault: vault(map, path, provider, caFile: caFile).map(CredentialTarget.vault)
        }
        var proxy: ProxyConfig?
        if let node = map["proxy"] { proxy = self.proxy(node, "\(path).proxy", kind: kind) }
        if proxy != nil, case let .redis(redis)? = target, redis.connection.host == nil {
            issue("\(path).proxy", "needs the cache's host: set host (the proxy connects to it)")
        }
        if proxy != nil, case let .postgres(postgres)? = target { proxyUpstreamTLS(postgres.connection, path) }
        let sinks = credentialSinks(map, path, kind: kind)
        guard let validName = CredentialName(name), let target else { return (name, nil) }
        return (name, CredentialConfig(name: validName, target: target, proxy: proxy, sinks: sinks))
    }

    private mutating func postgres(_ map: KeyedNodes, _ path: String, _ provider: CredentialProvider,
                                   caFile: String?) -> CredentialTarget.Postgres? {
        let host = requiredString(map, "host", path)
        let port = port(map, path, required: provider == .aws, default: CredentialConnection.Postgres.defaultPort)
        let user = provider == .gcp ? optionalString(map["user"], "\(path).user") : requiredString(map, "user", path)
        let database = optionalString(map["database"], "\(path).database")
        let resource = azureOnly(map, "resource", path, provider)
        let modeText = optionalString(map["sslmode"], "\(path).sslmode") ?? PostgresSSLMode.verifyFull.rawValue
        let mode = PostgresSSLMode(rawValue: modeText)
        if mode == nil {
            issue("\(path).sslmode", "'\(modeText)' is not one of \(PostgresSSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
        } else if mode?.allowsPlaintext == true, let host, !HostAddress.isLoopback(host) {
            issue("\(path).sslmode", "'\(modeText)' would send the token to \(host) without TLS; use require, verify-ca or verify-full (plain connections are allowed only to loopback hosts)")
        }
        guard let host, let port, let mode else { return nil }
        let login: TokenLogin<RDSLogin>
        switch provider {
        case .aws:
            guard let user else { return nil }
            login = .aws(RDSLogin(user: user))
        case .azure:
            guard let user else { return nil }
            login = .azure(AzureLogin(user: user, resource: resource))
        case .gcp:
            login = .gcp(user: user)
        }
        let connection = CredentialConnection.Postgres(host: host, port: port, database: database, sslmode: mode, caFile: caFile)
        return CredentialTarget.Postgres(connection: connection, login: login)
    }

    /// A Postgres proxy answers the server's password request with the token, and the clouds' IAM
    /// logins ask for it in clear text (inside TLS): to a server off this host, the TLS must
    /// prove whom it talks to, or anyone on the path could take the token.
    private mutating func proxyUpstreamTLS(_ connection: CredentialConnection.Postgres, _ path: String) {
        guard !HostAddress.isLoopback(connection.host) else { return }
        switch connection.sslmode {
        case .require:
            issue("\(path).sslmode", "'require' does not check the server's certificate, so the proxy would give the token to anyone on the path to \(connection.host); use verify-full (with ca_file for a private CA)")
        case .verifyCA where connection.caFile == nil:
            issue("\(path).sslmode", "'verify-ca' without ca_file accepts a certificate for any name from any CA the system trusts, so the proxy would give the token to anyone holding one; set ca_file to the server's CA bundle, or use verify-full")
        default:
            break
        }
    }

    private mutating func redis(_ map: KeyedNodes, _ path: String, _ provider: CredentialProvider,
                                caFile: String?) -> CredentialTarget.Redis? {
        let host = provider == .aws ? optionalString(map["host"], "\(path).host") : requiredString(map, "host", path)
        let port = port(map, path, required: false, default: CredentialConnection.Redis.defaultPort)
        let user = provider == .gcp ? optionalString(map["user"], "\(path).user") : requiredString(map, "user", path)
        let resource = azureOnly(map, "resource", path, provider)
        let tls = map["tls"].flatMap { bool($0, "\(path).tls") } ?? true
        if !tls, let host, !HostAddress.isLoopback(host) {
            issue("\(path).tls", "false would send the token to \(host) in clear; plain connections are allowed only to loopback hosts")
        }
        let login: TokenLogin<ElastiCacheLogin>?
        switch provider {
        case .aws:
            let cacheName = requiredString(map, "cache_name", path)
            let serverless = map["serverless"].flatMap { bool($0, "\(path).serverless") } ?? false
            let engine = optionalString(map["engine"], "\(path).engine").flatMap { choice($0, RedisEngine.self, "\(path).engine") }
                ?? .elasticache
            login = cacheName.flatMap { cacheName in
                user.map { .aws(ElastiCacheLogin(cacheName: cacheName, user: $0, serverless: serverless, engine: engine)) }
            }
        case .azure, .gcp:
            for key in ["cache_name", "serverless", "engine"] where map[key] != nil {
                issue("\(path).\(key)", "applies only to provider aws")
            }
            login = provider == .gcp ? .gcp(user: user) : user.map { .azure(AzureLogin(user: $0, resource: resource)) }
        }
        guard let port, let login else { return nil }
        return CredentialTarget.Redis(connection: CredentialConnection.Redis(host: host, port: port, tls: tls, caFile: caFile),
                                      login: login)
    }

    private mutating func vault(_ map: KeyedNodes, _ path: String, _ provider: CredentialProvider,
                                caFile: String?) -> CredentialTarget.Vault? {
        let address = requiredString(map, "address", path)
        if let address {
            do {
                let url = try EndpointURL(parsing: address)
                if url.scheme == "http", !HostAddress.isLoopback(url.host) {
                    issue("\(path).address", "'\(url.redacted)' would send the login and the token to \(url.host) in clear; use https (plain http is allowed only to loopback hosts)")
                }
            } catch {
                issue("\(path).address", "'\(EndpointURL.stripQuery(address))' is not an http(s) URL")
            }
        }
        let role = requiredString(map, "role", path)
        var mount: String?, serverID: String?, audience: String?
        let method = requiredString(map, "method", path).flatMap { choice($0, VaultAuthMethod.self, "\(path).method") }
        if let method {
            if let required = method.requiredProvider, required != provider.rawValue {
                issue("\(path).method", "\(method.rawValue) logs in with a \(required) identity, not \(provider.rawValue) (use provider: \(required), or method: jwt)")
            }
            mount = optionalString(map["mount"], "\(path).mount") ?? method.defaultMount
            serverID = optionalString(map["server_id"], "\(path).server_id")
            if serverID != nil, method != .awsIAM { issue("\(path).server_id", "applies only to method aws_iam") }
            audience = optionalString(map["audience"], "\(path).audience")
            if method == .jwt, audience == nil {
                issue("\(path).audience", "is missing; method jwt needs the audience (GCP) or resource (Azure) the Vault role expects")
            }
        }
        if let mount, mount.isEmpty || mount.hasPrefix("/") || mount.hasSuffix("/") {
            issue("\(path).mount", "'\(mount)' must be a path like 'aws' or 'auth-team/aws', without leading or trailing '/'")
        }
        let namespace = optionalString(map["namespace"], "\(path).namespace")
        let tlsServerName = optionalString(map["tls_server_name"], "\(path).tls_server_name")
        let revokeOnShutdown = map["revoke_on_shutdown"].flatMap { bool($0, "\(path).revoke_on_shutdown") } ?? false
        guard let address, let role, let method, let mount else { return nil }
        let connection = CredentialConnection.Vault(address: address, namespace: namespace, caFile: caFile,
                                                    tlsServerName: tlsServerName)
        return CredentialTarget.Vault(connection: connection, provider: provider, method: method, role: role, mount: mount,
                                      serverID: serverID, audience: audience, revokeOnShutdown: revokeOnShutdown)
    }

    private mutating func azureOnly(_ map: KeyedNodes, _ key: String, _ path: String, _ provider: CredentialProvider) -> String? {
        let value = optionalString(map[key], "\(path).\(key)")
        if value != nil, provider != .azure { issue("\(path).\(key)", "applies only to provider azure") }
        return value
    }

    private mutating func port(_ map: KeyedNodes, _ path: String, required: Bool, default fallback: Int) -> Int? {
        guard let node = map["port"] else {
            if required { missing("\(path).port", "is missing; the port is part of the signed token") }
            return fallback
        }
        guard let text = string(node, "\(path).port") else { return nil }
        guard let value = Int(text), (1...65535).contains(value) else {
            issue("\(path).port", "\(text) is not a port (1-65535)")
            return nil
        }
        return value
    }

    // MARK: Scalars and mappings

    /// A mapping's entries by key, in file order.
    struct KeyedNodes {
        var entries: [(key: String, value: Node)]
        subscript(key: String) -> Node? { entries.first { $0.key == key }?.value }
        var keys: [String] { entries.map(\.key) }
    }

    /// The entries of a mapping at `path`, reporting a non-mapping, duplicate keys and (when
    /// `allowed` is given) unknown keys.
    mutating func mapping(_ node: Node, _ path: String, allowed: [String]?) -> KeyedNodes? {
        guard case let .mapping(mapping) = node else {
            issue(path, "must be a mapping of keys to values")
            return nil
        }
        var result = KeyedNodes(entries: [])
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? ""
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            if result[key] != nil {
                issue(keyPath, "appears twice")
                continue
            }
            if let allowed, !allowed.contains(key) {
                unknownKey(keyPath, allowed: allowed)
                continue
            }
            guard let value = expanded(value, keyPath) else { continue }
            result.entries.append((key, value))
        }
        return result
    }

    /// `value` with its environment references expanded (see ``EnvironmentReferences``): the node
    /// itself when it holds none, a string scalar when it does, nil when they expand to nothing
    /// (the key counts as left out) or cannot be expanded (reported).
    ///
    /// Values are expanded once, here and for list items, so that a variable's value is never
    /// expanded again, and before they are interpreted, so that its text is checked like any other.
    mutating func expanded(_ value: Node, _ path: String) -> Node? {
        guard case let .scalar(scalar) = value, scalar.string.contains("$") else { return value }
        switch EnvironmentReferences.expand(scalar.string, environment: environment) {
        case let .success(text):
            expandedFrom[path] = scalar.string
            return text.isEmpty ? nil : .scalar(Node.Scalar(text, Tag(.str), .doubleQuoted, scalar.mark))
        case let .failure(problems):
            unexpandable.insert(path)
            for message in problems.messages { issue(path, message) }
            return nil
        }
    }

    /// Reports the key at `path` as missing: "is empty" when its references expanded to nothing,
    /// nothing more when they could not be expanded.
    mutating func missing(_ path: String, _ message: String = "is missing") {
        if unexpandable.contains(path) { return }
        issue(path, expandedFrom[path] == nil ? message : "is empty")
    }

    mutating func unknownKey(_ path: String, allowed: [String]) {
        issue(path, "is not a known key (allowed: \(allowed.joined(separator: ", ")))")
    }

    static func isNull(_ node: Node) -> Bool {
        guard case let .scalar(scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// A non-null scalar's text.
    mutating func string(_ node: Node, _ path: String) -> String? {
        guard case let .scalar(scalar) = node, !Self.isNull(node) else {
            issue(path, Self.isNull(node) ? "must not be null" : "must be a single value, not a list or mapping")
            return nil
        }
        return scalar.string
    }

    mutating func optionalString(_ node: Node?, _ path: String) -> String? {
        guard let node, !Self.isNull(node) else { return nil }
        guard let text = string(node, path) else { return nil }
        if text.isEmpty { issue(path, "is empty; leave the key out instead") }
        return text.isEmpty ? nil : text
    }

    mutating func requiredString(_ map: KeyedNodes, _ key: String, _ path: String) -> String? {
        guard let node = map[key], !Self.isNull(node) else {
            missing("\(path).\(key)")
            return nil
        }
        return optionalString(node, "\(path).\(key)")
    }

    mutating func url(_ node: Node?, _ path: String) -> String? {
        guard let text = optionalString(node, path) else { return nil }
        do {
            _ = try EndpointURL(parsing: text)
            return text
        } catch {
            issue(path, "'\(EndpointURL.stripQuery(text))' is not an http(s) URL like http://127.0.0.1:8080")
            return nil
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ text: String, _ type: T.Type, _ path: String) -> T?
    where T.RawValue == String {
        if let value = T(rawValue: text) { return value }
        issue(path, "'\(text)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        return nil
    }

    mutating func bool(_ node: Node, _ path: String) -> Bool? {
        guard let text = string(node, path) else { return nil }
        switch text.lowercased() {
        case "true": return true
        case "false": return false
        default:
            issue(path, "'\(text)' is not true or false")
            return nil
        }
    }

    mutating func number(_ node: Node, _ path: String) -> Double? {
        guard let text = string(node, path) else { return nil }
        guard let value = Double(text), value.isFinite else {
            issue(path, "'\(text)' is not a number")
            return nil
        }
        return value
    }

    mutating func duration(_ node: Node, _ path: String) -> Duration? {
        guard let text = string(node, path) else { return nil }
        guard let value = DurationText.duration(text) else {
            issue(path, "'\(text)' is not a duration: use a number and a unit, e.g. 500ms, 30s, 5m, 1h")
            return nil
        }
        return value
    }

    mutating func ids(_ node: Node, _ path: String) -> [UInt32] {
        guard case let .sequence(sequence) = node else {
            issue(path, "must be a list of numeric ids, e.g. [1000]")
            return []
        }
        return sequence.enumerated().compactMap { index, item in
            guard let item = expanded(item, "\(path)[\(index)]"), let text = string(item, "\(path)[\(index)]") else { return nil }
            guard let id = UInt32(text) else {
                issue("\(path)[\(index)]", "'\(text)' is not a numeric id (0-4294967295)")
                return nil
            }
            return id
        }
    }
}
