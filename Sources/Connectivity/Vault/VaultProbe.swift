import CloudAuth
import Foundation

/// Checks a Vault (or OpenBao) token: `GET /v1/auth/token/lookup-self` and reports the token's
/// display name, policies and time left. Vault's own `errors` are shown verbatim (they never
/// hold the token); transport failures (refused, timeout, untrusted certificate) get their own
/// causes.
public struct VaultProbe: Sendable {
    public var name: String
    public var endpoint: VaultEndpoint
    public var token: Secret
    private let http: any HTTPClient

    public init(name: String, endpoint: VaultEndpoint, token: Secret, http: any HTTPClient = CurlHTTPClient()) {
        self.name = name
        self.endpoint = endpoint
        self.token = token
        self.http = http
    }

    public func run() async -> ProbeReport {
        var report = ProbeReport(name: name, kind: "vault", endpoint: endpoint.address)
        var timer = StepTimer()
        let client = VaultClient(endpoint: endpoint, http: TransportMarkingClient(wrapped: http))
        do {
            let info = try await timer.time("lookup") { try await client.lookupSelf(token) }
            report.details = [
                ProbeDetail("display_name", info.displayName),
                ProbeDetail("policies", info.policies.joined(separator: ",")),
                ProbeDetail("ttl", info.ttl == 0 ? "never expires" : "\(info.ttl)s"),
                ProbeDetail("renewable", String(info.renewable)),
            ]
        } catch let transport as TransportFailure {
            report.failure = Self.classify(transport: transport.error)
        } catch let error as CloudAuthError {
            report.failure = Self.classify(vault: error)
        } catch let impostor as UntrustedSocketPeer {
            report.failure = ProbeFailure(.untrustedServer, impostor.refusal, remedy: impostor.remedy)
        } catch {
            report.failure = ProbeFailure(.failed, String(describing: error))
        }
        report.steps = timer.steps
        if var failure = report.failure {
            failure.message = failure.message.redacting(token)
            report.failure = failure
        }
        return report
    }

    /// A failure before Vault answered.
    static func classify(transport error: CloudAuthError) -> ProbeFailure {
        switch error.code {
        case .timeout:
            return ProbeFailure(.timeout, summary(error), remedy: "check the address and that no firewall drops packets")
        case .rejected:
            // CurlHTTPClient rejects only certificates (and redirects to other hosts) before an answer.
            return ProbeFailure(.untrustedCertificate, summary(error),
                                remedy: error.remedy ?? "set ca_file to the CA that signed Vault's certificate")
        case .invalidInput:
            return ProbeFailure(.invalidInput, summary(error), remedy: error.remedy)
        default:
            return ProbeFailure(.unreachable, summary(error),
                                remedy: error.remedy ?? "check the address and that Vault runs and listens there")
        }
    }

    /// A failure Vault itself reported (its HTTP status and `errors`).
    static func classify(vault error: CloudAuthError) -> ProbeFailure {
        switch error.code {
        case .rejected:
            return ProbeFailure(.rejected, summary(error), remedy: error.remedy ?? "the token is not valid: log in again")
        case .unavailable:
            return ProbeFailure(.serverError, summary(error), remedy: error.remedy)
        case .malformedResponse:
            return ProbeFailure(.protocolError, summary(error), remedy: "check that the address is a Vault server")
        default:
            return ProbeFailure(.failed, summary(error), remedy: error.remedy)
        }
    }
}

/// The error without its remedy, which becomes the remedy.
private func summary(_ error: CloudAuthError) -> String { "\(error.source): \(error.message)" }

/// Marks errors from the HTTP transport, so that they are told apart from Vault's own answers,
/// which ``VaultClient`` turns into errors of the same type.
private struct TransportMarkingClient: HTTPClient {
    let wrapped: any HTTPClient

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        do {
            return try await wrapped.execute(request)
        } catch let error as CloudAuthError {
            throw TransportFailure(error: error)
        }
    }
}

private struct TransportFailure: Error {
    let error: CloudAuthError
}
