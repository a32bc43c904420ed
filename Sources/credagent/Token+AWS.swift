import ArgumentParser
import CloudAuth
import Foundation

/// Flags every AWS token command shares.
struct AWSTokenOptions: ParsableArguments {
    @Option(help: "Signing region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, then IMDS).")
    var region: String?

    /// Resolves credentials and region from the standard AWS chain, runs `make`, prints its result
    /// alone on stdout. Errors go to stderr: exit 2 for usage and configuration, 1 for a failed fetch.
    func run(_ make: @Sendable (AWSCredentialChain, AWSCredentials, String) async throws -> String) async throws {
        try await Self.run(region: region, make)
    }

    /// ``run(_:)`` with `--region`'s value (nil when not given).
    static func run(region: String?,
                    _ make: @Sendable (AWSCredentialChain, AWSCredentials, String) async throws -> String) async throws {
        let chain = AWSCredentialChain(settings: AWSSettings(region: region), http: OnDemandHTTPClient(),
                                       environment: ProcessInfo.processInfo.environment)
        try await OneShot.emit(label: "aws token") {
            // One process, one token: one pass over the chain. Its cache and shared fetch
            // (`credentials()`) are for callers that come back, and would cost a thread.
            try await make(chain, try await chain.resolveAfresh().credentials, try await chain.region())
        }
    }
}

/// Sets libcurl and its threads up only when a request is made: a token signed with keys from
/// the environment or a profile needs no HTTP, and a one-shot command should not pay for it.
struct OnDemandHTTPClient: HTTPClient {
    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        try await CurlHTTPClient().execute(request)
    }
}

/// `credagent token rds`: the IAM authentication token (password) for an RDS or Aurora database.
struct TokenRDSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rds", abstract: "Print an RDS IAM authentication token for --user at --host:--port.")

    @Option(help: "Database endpoint host name.") var host: String
    @Option(help: "Database port.") var port: Int
    @Option(help: "Database user.") var user: String
    @OptionGroup var aws: AWSTokenOptions
    @Option(help: .hidden) var benchmarkIterations: Int?

    func run() async throws {
        try await Self.print(host: host, port: port, user: user, region: aws.region, benchmarkIterations: benchmarkIterations)
    }

    /// Signs and prints the token; the same for this command and its plain form (``PlainCommandLine``).
    static func print(host: String, port: Int, user: String, region: String?, benchmarkIterations: Int?) async throws {
        guard (1...65535).contains(port) else {
            throw OneShot.usageError("--port must be between 1 and 65535")
        }
        try await AWSTokenOptions.run(region: region) { _, credentials, region in
            if let iterations = benchmarkIterations, iterations > 0 {
                Self.benchmark(iterations: iterations, host: host, port: port, user: user, region: region, credentials: credentials)
            }
            return RDSAuthToken.make(host: host, port: port, user: user, region: region,
                                     credentials: credentials, at: Date()).token.reveal()
        }
    }

    /// Times `iterations` token generations in process and reports the mean wall-clock and
    /// CPU time per token to stderr (CPU time is what a busy machine does not distort).
    static func benchmark(iterations: Int, host: String, port: Int, user: String, region: String, credentials: AWSCredentials) {
        func threadCPUSeconds() -> Double {
            var time = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
            return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
        }
        var length = 0
        let wallStart = Date(), cpuStart = threadCPUSeconds()
        for _ in 0..<iterations {
            length &+= RDSAuthToken.make(host: host, port: port, user: user, region: region,
                                         credentials: credentials, at: Date()).token.reveal().utf8.count
        }
        let cpu = threadCPUSeconds() - cpuStart, wall = Date().timeIntervalSince(wallStart)
        FileHandle.standardError.write(Data(String(format: "rds token: %d iterations, %.2f us/token wall, %.2f us/token cpu (%d bytes)\n",
                                                   iterations, wall / Double(iterations) * 1e6, cpu / Double(iterations) * 1e6,
                                                   length / iterations).utf8))
    }
}

/// `credagent token elasticache` and `token memorydb`: the IAM authentication token for a cache user.
struct TokenCacheOptions: ParsableArguments {
    @Option(help: "Replication group, serverless cache or cluster name.") var cacheName: String
    @Option(help: "Cache user (IAM-enabled).") var user: String
    @Flag(help: "The cache is serverless.") var serverless = false
    @OptionGroup var aws: AWSTokenOptions

    func run(service: ElastiCacheAuthToken.Service) async throws {
        try await aws.run { [cacheName, user, serverless] _, credentials, region in
            ElastiCacheAuthToken.make(cacheName: cacheName, user: user, serverless: serverless, service: service,
                                      region: region, credentials: credentials, at: Date()).token.reveal()
        }
    }
}

struct TokenElastiCacheCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elasticache", abstract: "Print an ElastiCache IAM authentication token for --user.")
    @OptionGroup var cache: TokenCacheOptions
    func run() async throws { try await cache.run(service: .elasticache) }
}

struct TokenMemoryDBCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memorydb", abstract: "Print a MemoryDB IAM authentication token for --user.")
    @OptionGroup var cache: TokenCacheOptions
    func run() async throws { try await cache.run(service: .memorydb) }
}

/// `credagent token vault-aws`: the JSON body of a Vault AWS IAM login.
struct TokenVaultAWSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault-aws", abstract: "Print the JSON body of a Vault AWS IAM login (POST /v1/auth/aws/login).")

    @Option(help: "Vault role.") var role: String
    @Option(help: "Value of the X-Vault-AWS-IAM-Server-ID header, when the Vault mount requires one.") var serverId: String?
    @OptionGroup var aws: AWSTokenOptions

    func run() async throws {
        try await aws.run { [role, serverId] chain, credentials, region in
            let payload = try VaultAWSLogin.payload(role: role, serverID: serverId, region: region,
                                                    stsEndpoint: chain.configuredSTSEndpoint,
                                                    credentials: credentials, at: Date())
            let json = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes])
            return String(decoding: json, as: UTF8.self)
        }
    }
}
