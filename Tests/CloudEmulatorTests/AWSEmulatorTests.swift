import CloudAuth
import CloudEmulator
import Foundation
import Testing
import TestSupport

/// The emulator's AWS endpoints as the real credential chain sees them.
struct AWSEmulatorTests {
    @Test func chainGetsKeysAndRegionFromIMDSv2() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            var environment = emulator.environment(for: .awsIMDS)
            environment["AWS_REGION"] = nil
            environment["HOME"] = NSTemporaryDirectory() + "no-aws-home"
            let chain = AWSCredentialChain(settings: AWSSettings(), http: CurlHTTPClient(), environment: environment)
            let credentials = try await chain.credentials()
            #expect(credentials.accessKeyID.hasPrefix("ASIA"))
            #expect(emulator.wasIssued(credentials.secretAccessKey.reveal()))
            #expect(emulator.wasIssued(try #require(credentials.sessionToken).reveal()))
            let lifetime = try #require(credentials.expiration).timeIntervalSinceNow
            #expect(lifetime > 3500 && lifetime <= 3600)
            #expect(try await chain.region() == emulator.configuration.awsRegion)
            #expect(emulator.requestCount(.awsIMDSToken) >= 1)
            #expect(try await chain.instanceIdentityPKCS7().isEmpty == false)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func imdsV1RequestsAreRefused() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let response = try await CurlHTTPClient().execute(HTTPRequest(
                url: "\(emulator.awsBaseURL)/latest/meta-data/iam/security-credentials/"))
            #expect(response.status == 401)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func containerEndpointChecksTheAuthorizationToken() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            var environment = emulator.environment(for: .awsContainer)
            environment["HOME"] = NSTemporaryDirectory() + "no-aws-home"
            environment["AWS_EC2_METADATA_DISABLED"] = "true"
            let credentials = try await AWSCredentialChain(settings: AWSSettings(), http: CurlHTTPClient(),
                                                           environment: environment).credentials()
            #expect(emulator.wasIssued(credentials.secretAccessKey.reveal()))
            #expect(emulator.requestCount(.awsContainerCredentials) == 1)

            environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong"
            let error = await #expect(throws: CloudAuthError.self) {
                try await AWSCredentialChain(settings: AWSSettings(), http: CurlHTTPClient(), environment: environment).credentials()
            }
            #expect(error?.description.contains("403") == true)
        } cleanup: {
            try? await emulator.stop()
        }
    }
}
