import CloudAuth
import CredentialModel
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing
@testable import CredentialAgent

private let t0 = Date(timeIntervalSince1970: 1_800_000_000)

func descriptor(_ name: String = "orders-db") -> CredentialConfig {
    let connection = CredentialConnection.Postgres(host: "db.example.com", port: 5432, database: "kong", sslmode: .verifyFull)
    return CredentialConfig(name: CredentialName(name)!, target: .postgres(.init(connection: connection, login: .aws(RDSLogin(user: "kong")))))
}

func machine(versions: Int, secret: String = "tok") -> RefreshStateMachine {
    var machine = RefreshStateMachine(policy: RefreshConfig().policy, backoff: RefreshConfig().backoff)
    for index in 0..<versions {
        let issued = t0.addingTimeInterval(Double(index))
        machine.fetchSucceeded(IssuedCredential(username: "kong", secret: Secret("\(secret)\(index)"), issuedAt: issued,
                                                    expiresAt: issued.addingTimeInterval(900)),
                                   now: issued, random: 0)
    }
    return machine
}

/// Collects what waiters were called with: the new version, nil for a removal, -1 for a recheck.
private final class Calls: Sendable {
    let values = NIOLockedValueBox<[Int?]>([])
    var all: [Int?] { values.withLockedValue { $0 } }
    func waiter() -> CredentialStore.Waiter {
        { outcome in
            let value: Int? = switch outcome {
            case let .rotated(snapshot): snapshot.version
            case .removed: nil
            case .recheck: -1
            }
            self.values.withLockedValue { $0.append(value) }
        }
    }
}

@Suite struct CredentialStoreTests {
    /// Stands for the refresher that owns the entry; kept alive, so that no other object can take
    /// its address and with it its identity.
    private let ownerObject = NSObject()
    var owner: ObjectIdentifier { ObjectIdentifier(ownerObject) }

    @Test func timestampsAreClampedInsteadOfOverflowing() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_795_860_000)) == "2026-11-28T10:00:00Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: .infinity)) == "9999-12-31T23:59:59Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1e300)) == "9999-12-31T23:59:59Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -.infinity)) == "1970-01-01T00:00:00Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: .nan)) == "1970-01-01T00:00:00Z")
        #expect(Timestamp.format(.distantFuture) == "4001-01-01T00:00:00Z")
    }

    @Test func rotationWakesWaitersOnceWithTheNewVersion() throws {
        let store = CredentialStore()
        store.register(descriptor(), machine(versions: 1), owner: owner)
        let calls = Calls()
        guard case .waiting = store.waitForVersion("orders-db", otherThan: 1, calls.waiter()) else {
            Issue.record("expected to wait")
            return
        }
        store.publish(descriptor(), machine(versions: 1), owner: owner)
        #expect(calls.all.isEmpty)
        store.publish(descriptor(), machine(versions: 2), owner: owner)
        #expect(calls.all == [2])
        store.publish(descriptor(), machine(versions: 3), owner: owner)
        #expect(calls.all == [2])
    }

    @Test func aDifferentVersionAnswersAtOnce() {
        let store = CredentialStore()
        store.register(descriptor(), machine(versions: 3), owner: owner)
        let calls = Calls()
        guard case let .changed(snapshot) = store.waitForVersion("orders-db", otherThan: 1, calls.waiter()) else {
            Issue.record("expected the current snapshot")
            return
        }
        #expect(snapshot.version == 3)
        guard case .unknown = store.waitForVersion("other", otherThan: 0, calls.waiter()) else {
            Issue.record("expected unknown")
            return
        }
    }

    @Test func cancelledAndRemovedWaiters() {
        let store = CredentialStore()
        store.register(descriptor(), machine(versions: 1), owner: owner)
        let calls = Calls()
        guard case let .waiting(first) = store.waitForVersion("orders-db", otherThan: 1, calls.waiter()),
              case .waiting = store.waitForVersion("orders-db", otherThan: 1, calls.waiter()) else {
            Issue.record("expected to wait")
            return
        }
        #expect(store.cancelWait("orders-db", id: first))
        #expect(!store.cancelWait("orders-db", id: first))
        store.remove("orders-db")
        #expect(calls.all == [nil])
        #expect(store.snapshot("orders-db") == nil)
    }

    @Test func aChangeOfWhoMayReadEndsEveryWaitForARecheck() {
        let store = CredentialStore()
        store.register(descriptor(), machine(versions: 1), owner: owner)
        store.register(descriptor("other"), machine(versions: 1), owner: owner)
        let calls = Calls()
        guard case .waiting = store.waitForVersion("orders-db", otherThan: 1, calls.waiter()),
              case .waiting = store.waitForVersion("other", otherThan: 1, calls.waiter()) else {
            Issue.record("expected to wait")
            return
        }
        store.recheckWaiters()
        #expect(calls.all == [-1, -1])
        // Each waiter is called once: a rotation afterwards wakes nobody.
        store.publish(descriptor(), machine(versions: 2), owner: owner)
        #expect(calls.all == [-1, -1])
    }

    @Test func onlyTheOwnerPublishes() {
        let store = CredentialStore()
        store.register(descriptor(), machine(versions: 1), owner: owner)
        let intruder = NSObject()
        store.publish(descriptor(), machine(versions: 5), owner: ObjectIdentifier(intruder))
        #expect(store.snapshot("orders-db")?.version == 1)
        withExtendedLifetime(intruder) {}
    }

    @Test func bodyIsTheDesignedJSONAndEncodedOncePerVersion() throws {
        let store = CredentialStore()
        store.register(descriptor(), machine(versions: 1), owner: owner)
        let snapshot = try #require(store.snapshot("orders-db"))
        let body = try #require(snapshot.servableBody(at: t0))
        #expect(String(buffer: body) == """
            {"name":"orders-db","kind":"postgres","provider":"aws","version":1,"username":"kong","password":"tok0",\
            "issued_at":"2027-01-15T08:00:00Z","expires_at":"2027-01-15T08:15:00Z","refresh_at":"2027-01-15T08:09:54Z",\
            "connection":{"host":"db.example.com","port":5432,"database":"kong","sslmode":"verify-full"}}
            """)
        let response = try #require(snapshot.servableKeepAliveResponse(at: t0))
        #expect(String(buffer: response) == "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + "content-length: \(body.readableBytes)\r\ncache-control: no-store\r\n\r\n" + String(buffer: body))
        #expect(snapshot.servableBody(at: t0.addingTimeInterval(885)) == nil)
        #expect(snapshot.servableKeepAliveResponse(at: t0.addingTimeInterval(885)) == nil)
        store.publish(descriptor(), snapshot.machine, owner: owner)
        #expect(store.snapshot("orders-db")?.body == body)
    }

    @Test("a Vault credential's connection names its CA bundle and TLS server name, for clients to verify alike")
    func vaultConnectionCarriesTLSSettings() {
        let connection = CredentialConnection.Vault(address: "https://10.0.0.5:8200", caFile: "/etc/credagent/vault-ca.pem",
                                                    tlsServerName: "vault.internal")
        let config = CredentialConfig(name: CredentialName("vault")!, target: .vault(.init(
            connection: connection, provider: .gcp, method: .gcpIAM, role: "r", mount: "gcp")))
        #expect(config.connection.json == JSONValue.object([
            ("address", .string("https://10.0.0.5:8200")), ("namespace", .null),
            ("ca_file", .string("/etc/credagent/vault-ca.pem")), ("tls_server_name", .string("vault.internal")),
        ]))
    }

    @Test func readsDoNotWaitForAnInFlightRefresh() throws {
        let store = CredentialStore()
        var refreshing = machine(versions: 1)
        refreshing.beginFetch(now: t0.addingTimeInterval(600))
        store.register(descriptor(), refreshing, owner: owner)
        let snapshot = try #require(store.snapshot("orders-db"))
        #expect(snapshot.state(at: t0.addingTimeInterval(600)) == .refreshing)
        #expect(snapshot.servableBody(at: t0.addingTimeInterval(600)) != nil)
    }

    @Test func snapshotsKeepConfigurationOrder() {
        let store = CredentialStore()
        for name in ["c", "a", "b"] { store.register(descriptor(name), machine(versions: 0), owner: owner) }
        #expect(store.snapshots().map(\.name) == ["c", "a", "b"])
    }
}

@Suite struct RouteTests {
    @Test func routesOfTheSocketAPI() throws {
        #expect(try Route.parse(method: "GET", uri: "/v1/credentials").get() == .list)
        #expect(try Route.parse(method: "GET", uri: "/v1/health").get() == .health)
        #expect(try Route.parse(method: "GET", uri: "/v1/ready").get() == .ready)
        #expect(try Route.parse(method: "GET", uri: "/metrics").get() == .metrics)
        #expect(try Route.parse(method: "GET", uri: "/v1/credentials/orders-db").get()
            == .credential(name: "orders-db", query: .init()))
        #expect(try Route.parse(method: "GET", uri: "/v1/credentials/orders-db?min_valid=60").get()
            == .credential(name: "orders-db", query: .init(minValid: 60)))
        #expect(try Route.parse(method: "GET", uri: "/v1/credentials/a?wait=30&version=3").get()
            == .credential(name: "a", query: .init(wait: 30, version: 3)))
        #expect(try Route.parse(method: "POST", uri: "/v1/credentials/a/refresh").get() == .refresh(name: "a"))
    }

    @Test func failures() {
        #expect(Route.parse(method: "GET", uri: "/v2/credentials") == .failure(.notFound))
        #expect(Route.parse(method: "GET", uri: "/v1/credentials/Bad..Name") == .failure(.notFound))
        #expect(Route.parse(method: "GET", uri: "/v1/credentials/a/b") == .failure(.notFound))
        #expect(Route.parse(method: "DELETE", uri: "/v1/credentials/a") == .failure(.methodNotAllowed(allowed: "GET")))
        #expect(Route.parse(method: "GET", uri: "/v1/credentials/a/refresh") == .failure(.methodNotAllowed(allowed: "POST")))
        #expect(Route.parse(method: "POST", uri: "/v1/health") == .failure(.methodNotAllowed(allowed: "GET")))
        guard case .failure(.badRequest) = Route.parse(method: "GET", uri: "/v1/credentials/a?wait=30") else {
            Issue.record("wait without version must be refused")
            return
        }
        guard case .failure(.badRequest) = Route.parse(method: "GET", uri: "/v1/credentials/a?wait=301&version=1"),
              case .failure(.badRequest) = Route.parse(method: "GET", uri: "/v1/credentials/a?min_valid=-1"),
              case .failure(.badRequest) = Route.parse(method: "GET", uri: "/v1/credentials/a?colour=red") else {
            Issue.record("bad queries must be refused")
            return
        }
    }

    @Test func routesWithoutOptionsRefuseAnyQuery() {
        for (method, uri, template) in [("GET", "/v1/credentials?x=1", "/v1/credentials"), ("GET", "/v1/health?verbose", "/v1/health"),
                                        ("GET", "/v1/ready?a=b", "/v1/ready"), ("GET", "/metrics?format=json", "/metrics"),
                                        ("POST", "/v1/credentials/a/refresh?force=1", "/v1/credentials/{name}/refresh")] {
            #expect(Route.parse(method: method, uri: uri) == .failure(.badRequest("\(template) takes no query parameters", route: template)))
        }
    }

    @Test func numbersInQueriesArePlainDecimals() throws {
        #expect(try Route.parse(method: "GET", uri: "/v1/credentials/a?wait=1.5&version=07").get()
            == .credential(name: "a", query: .init(wait: 1.5, version: 7)))
        for query in ["wait=0x10&version=1", "wait=1e2&version=1", "wait=+5&version=1", "wait=inf&version=1", "wait=nan&version=1",
                      "wait=.5&version=1", "wait=5.&version=1", "wait=&version=1", "wait=1&version=0x1", "wait=1&version=+1",
                      "wait=1&version=-1", "min_valid=0x1p4", "min_valid=1_000", "min_valid=%31"] {
            guard case .failure(.badRequest) = Route.parse(method: "GET", uri: "/v1/credentials/a?" + query) else {
                Issue.record("\(query) must be refused")
                continue
            }
        }
    }
}
