import ArgumentParser
import CloudAuth
import Foundation

/// `credagent token gcp`: a Google access token, identity token or the service account's email,
/// from the key file (GOOGLE_APPLICATION_CREDENTIALS) or the metadata server.
struct TokenGCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gcp",
        abstract: "Print a GCP access token (--scopes), identity token (--audience) or the account email (--email).",
        discussion: "Sources: GOOGLE_APPLICATION_CREDENTIALS (a service account key file), else the metadata "
            + "server (GCE_METADATA_HOST). For Cloud SQL the IAM user is the email without .gserviceaccount.com.")

    @Option(help: "Comma-separated OAuth scopes for an access token.") var scopes: String?
    @Option(help: "Audience of an identity token.") var audience: String?
    @Flag(help: "Print the service account's email instead of a token.") var email = false
    @Option(help: .hidden) var benchmarkIterations: Int?

    func run() async throws {
        guard [scopes != nil, audience != nil, email].filter({ $0 }).count <= 1 else {
            throw OneShot.usageError("use only one of --scopes, --audience and --email")
        }
        let identity = GCPIdentity(settings: GCPSettings(), http: CurlHTTPClient(),
                                   environment: ProcessInfo.processInfo.environment)
        let scopeList = (scopes ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        try await OneShot.emit(benchmarkIterations: benchmarkIterations, label: "gcp fetch") { [audience, email] in
            if email { return try await identity.email() }
            if let audience { return try await identity.identityToken(audience: audience).token.reveal() }
            return try await identity.accessToken(scopes: scopeList).token.reveal()
        }
    }
}
