import CloudAuth
import CredentialModel
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `credagent doctor` found: per cloud, the identity its chain resolves to, from which link,
/// and the clock skew against the endpoint that answered; per file the agent trusts (config,
/// socket directory, socket), its mode and owner and whether another user could change it. Holds
/// no secret: tokens and keys are obtained to prove the chain works and then dropped.
public struct DoctorReport: Sendable, Encodable {
    /// How a check came out.
    public enum Status: String, Sendable, Encodable {
        case ok, warning, failed
    }

    /// One cloud's identity.
    public struct Cloud: Sendable, Encodable {
        /// `aws`, `azure` or `gcp`.
        public var cloud: String
        public var status: Status = .ok
        /// The link of the chain that yielded the identity, e.g. `imds`, `workload identity`.
        public var link: String?
        /// Where that link is: an endpoint, a file, the role assumed on top.
        public var source: String?
        /// Who it is: an ARN, Azure client and object ids, a service account's email.
        public var identity: String?
        /// The endpoint whose `Date` header was compared with this machine's clock.
        public var clockEndpoint: String?
        /// That endpoint's time minus this machine's, in whole seconds (good to about one).
        public var clockSkewSeconds: Int?
        public var error: String?
        public var remedy: String?
    }

    /// One file or directory the agent trusts.
    public struct File: Sendable, Encodable {
        /// `config`, `socket directory` or `socket`.
        public var role: String
        public var path: String
        public var status: Status = .ok
        /// Permission bits in octal, e.g. `0640`; nil when it does not exist.
        public var mode: String?
        public var ownerUID: UInt32?
        public var problem: String?
        public var remedy: String?
    }

    public var clouds: [Cloud]
    public var files: [File]
    /// False when any check failed (warnings do not count).
    public var ok: Bool

    init(clouds: [Cloud], files: [File]) {
        self.clouds = clouds
        self.files = files
        ok = !(clouds.map(\.status) + files.map(\.status)).contains(.failed)
    }

    /// The report as JSON (snake_case keys; absent values left out).
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Two aligned tables (clouds, files), then each problem with its fix.
    public func table() -> String {
        let skew: (Cloud) -> String = { row in
            row.clockSkewSeconds.map { ($0 >= 0 ? "+" : "") + "\($0) s" } ?? "-"
        }
        var text = Self.aligned([["CLOUD", "STATUS", "LINK", "IDENTITY", "CLOCK SKEW", "SOURCE"]] + clouds.map {
            [$0.cloud, $0.status.rawValue, $0.link ?? "-", $0.identity ?? "-", skew($0), $0.source ?? "-"]
        })
        text += "\n" + Self.aligned([["FILE", "STATUS", "MODE", "OWNER", "PATH"]] + files.map {
            [$0.role, $0.status.rawValue, $0.mode ?? "-", $0.ownerUID.map(String.init) ?? "-", $0.path]
        })
        let problems = clouds.compactMap { row in
            row.error.map { "\(row.cloud): \($0)" + (row.remedy.map { "\n  fix: \($0)" } ?? "") }
        } + files.compactMap { row in
            row.problem.map { "\(row.role) \(row.path): \($0)" + (row.remedy.map { "\n  fix: \($0)" } ?? "") }
        }
        if !problems.isEmpty { text += "\n" + problems.joined(separator: "\n") + "\n" }
        return text
    }

    private static func aligned(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}

/// Runs the checks of `credagent doctor`.
public enum Doctor {
    /// A skew from this many seconds on is a warning.
    public static let skewWarning: TimeInterval = 30
    /// From this many on, a failure: AWS refuses signatures, and token verifiers tokens, that far off.
    public static let skewFailure: TimeInterval = 300

    /// Checks the clouds `config` uses (every cloud without one), with its provider settings, and
    /// the config file and socket, judged for the uid running this (run it as the agent's user).
    public static func examine(config: AgentConfig?, configPath: String?, socketPath: String,
                               environment: [String: String], http: any HTTPClient = CurlHTTPClient()) async -> DoctorReport {
        let used = config.map { Set($0.credentials.map(\.provider)) } ?? Set(CredentialProvider.allCases)
        let clouds = await withTaskGroup(of: DoctorReport.Cloud.self) { group in
            for provider in CredentialProvider.allCases where used.contains(provider) {
                group.addTask {
                    let clock = ServerClock(http)
                    var row = DoctorReport.Cloud(cloud: provider.rawValue)
                    do {
                        switch provider {
                        case .aws: try await checkAWS(&row, config?.aws ?? AWSSettings(), clock, environment)
                        case .azure: try await checkAzure(&row, config?.azure ?? AzureSettings(), clock, environment)
                        case .gcp: try await checkGCP(&row, config?.gcp ?? GCPSettings(), clock, environment)
                        }
                    } catch {
                        row.status = .failed
                        // The remedy goes in its own field, not repeated in the message.
                        row.error = (error as? CloudAuthError).map { "\($0.source): \($0.message)" } ?? "\(error)"
                        row.remedy = remedy(for: error)
                    }
                    judgeClock(&row, clock.reading)
                    return row
                }
            }
            var rows: [DoctorReport.Cloud] = []
            for await row in group { rows.append(row) }
            return rows.sorted { $0.cloud < $1.cloud }
        }
        var files: [DoctorReport.File] = []
        if let configPath { files.append(trusted("config", configPath)) }
        files += socketFiles(socketPath, expectedMode: config?.socket.mode, sharedDirectory: config?.socket.sharedDirectory ?? false)
        return DoctorReport(clouds: clouds, files: files)
    }

    // MARK: Clouds

    private static func checkAWS(_ row: inout DoctorReport.Cloud, _ settings: AWSSettings, _ http: any HTTPClient,
                                 _ environment: [String: String]) async throws {
        let chain = AWSCredentialChain(settings: settings, http: http, environment: environment)
        let (link, credentials) = try await chain.resolveAfresh()
        row.link = link
        if credentials.source != link { row.source = credentials.source }
        row.identity = try await chain.callerIdentity(with: credentials).arn
    }

    private static func checkAzure(_ row: inout DoctorReport.Cloud, _ settings: AzureSettings, _ http: any HTTPClient,
                                   _ environment: [String: String]) async throws {
        let azure = AzureIdentity(settings: settings, http: http, environment: environment, retry: AzureRetryPolicy(maxAttempts: 1))
        switch try azure.source() {
        case let .workloadIdentity(tokenFile, _, _, authorityHost):
            (row.link, row.source) = ("workload identity", "\(tokenFile) exchanged at \(authorityHost)")
        case let .appService(endpoint):
            (row.link, row.source) = ("app service", EndpointURL.stripQuery(endpoint))
        case let .imds(endpoint):
            (row.link, row.source) = ("imds", endpoint)
        }
        // A management token: every managed identity gets one, whatever its role assignments.
        let token = try await azure.token(resource: AzureResource.management)
        guard let claims = try? JWT.decode(token.token.reveal(), source: "azure token") else {
            row.identity = "a token was issued (not a JWT: no claims to show)"
            return
        }
        row.identity = [("client", claims.string("appid") ?? claims.string("azp")), ("object", claims.string("oid")),
                        ("tenant", claims.string("tid")), ("resource", claims.string("xms_mirid"))]
            .compactMap { name, value in value.map { "\(name) \($0)" } }.joined(separator: ", ")
    }

    private static func checkGCP(_ row: inout DoctorReport.Cloud, _ settings: GCPSettings, _ http: any HTTPClient,
                                 _ environment: [String: String]) async throws {
        let gcp = GCPIdentity(settings: settings, http: http, environment: environment)
        switch gcp.source {
        case let .keyFile(path, origin):
            (row.link, row.source) = ("key file", "\(path) (\(origin))")
        case let .metadataServer(host, account):
            (row.link, row.source) = ("metadata server", "\(host), account \(account)")
        }
        row.identity = try await gcp.email()
        _ = try await gcp.accessToken()
    }

    private static func remedy(for error: any Error) -> String {
        guard let error = error as? CloudAuthError else { return "see the message" }
        if let remedy = error.remedy { return remedy }
        switch error.code {
        case .unavailable, .timeout:
            return "check that \(error.source) is reachable from here (network policy, proxy settings, the metadata hop limit), or configure another link of the chain"
        case .rejected:
            return "check that this identity exists and may do this (trust policy, role assignment, IAM binding)"
        default:
            return "see the message"
        }
    }

    private static func judgeClock(_ row: inout DoctorReport.Cloud, _ reading: ServerClock.Reading?) {
        guard let reading else { return }
        row.clockEndpoint = reading.endpoint
        row.clockSkewSeconds = Int(reading.skew.rounded())
        let size = abs(reading.skew)
        guard size >= skewWarning else { return }
        let problem = "this machine's clock is \(Int(size.rounded())) s \(reading.skew > 0 ? "behind" : "ahead of") \(reading.endpoint)"
        row.error = row.error.map { $0 + "; " + problem } ?? problem
        row.remedy = row.remedy ?? "synchronise the clock (chrony, systemd-timesyncd): signatures and tokens are refused once clocks differ by about 5 minutes"
        if row.status != .failed { row.status = size >= skewFailure ? .failed : .warning }
    }

    // MARK: Files

    /// A path the agent trusts, under the same rules it applies at start (``StrictModes``).
    private static func trusted(_ role: String, _ path: String, checking checked: String? = nil) -> DoctorReport.File {
        var row = DoctorReport.File(role: role, path: path)
        var info = stat()
        if stat(path, &info) == 0 {
            row.mode = String(format: "%04o", info.st_mode & 0o7777)
            row.ownerUID = info.st_uid
        }
        do {
            try StrictModes.check(checked ?? path)
        } catch {
            row.status = .failed
            let named = error.path == path || error.path == URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            row.problem = (named ? "" : "\(error.path) ") + error.problem + ", so another user could change it"
            row.remedy = error.remedy
        }
        return row
    }

    private static func socketFiles(_ path: String, expectedMode: UInt32?, sharedDirectory: Bool) -> [DoctorReport.File] {
        let directory = (path as NSString).deletingLastPathComponent
        var directoryRow: DoctorReport.File
        if access(directory, F_OK) != 0 {
            directoryRow = DoctorReport.File(role: "socket directory", path: directory, status: .warning,
                                             problem: "does not exist yet",
                                             remedy: "the agent creates it (0750) at start when it may; else create it")
        } else {
            directoryRow = trusted("socket directory", directory,
                                   checking: sharedDirectory ? (directory as NSString).deletingLastPathComponent : nil)
        }
        var socketRow = DoctorReport.File(role: "socket", path: path)
        var info = stat()
        if lstat(path, &info) != 0 {
            (socketRow.status, socketRow.problem) = (.warning, "no socket here")
            socketRow.remedy = "start the agent, or give the path it serves on (--socket, socket.path)"
        } else if info.st_mode & S_IFMT != S_IFSOCK {
            (socketRow.status, socketRow.problem) = (.failed, "is not a socket")
            socketRow.remedy = "remove it or choose another socket.path"
        } else {
            socketRow.mode = String(format: "%04o", info.st_mode & 0o7777)
            socketRow.ownerUID = info.st_uid
            if !UnixSocketFile.isListening(path) {
                (socketRow.status, socketRow.problem) = (.warning, "nobody listens on it (left by an agent that stopped)")
                socketRow.remedy = "start the agent; it replaces the stale socket"
            } else if let expectedMode, info.st_mode & 0o777 != expectedMode {
                (socketRow.status, socketRow.problem) = (.warning, "its mode is not socket.mode \(String(format: "%04o", expectedMode))")
                socketRow.remedy = "restart the agent, or check that nothing else changes the socket's mode"
            } else if info.st_uid != 0, info.st_uid != getuid() {
                (socketRow.status, socketRow.problem) = (.warning, "is served by uid \(info.st_uid), which clients refuse by default")
                socketRow.remedy = "give clients --server-uid \(info.st_uid) or CREDAGENT_SERVER_UID"
            }
        }
        return [directoryRow, socketRow]
    }
}
