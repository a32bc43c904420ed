import Foundation

/// A token derived from AWS keys by presigning: the token, when it was signed, and when it stops
/// working.
public struct SignedToken: Sendable {
    public var token: Secret
    public var issuedAt: Date
    /// The earlier of the token's own lifetime and the expiry of the keys that signed it.
    public var expiresAt: Date

    public init(token: Secret, issuedAt: Date, expiresAt: Date) {
        self.token = token
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }
}

/// Presigned `connect` tokens, the password of IAM database and cache authentication: the
/// presigned URL without its `https://` scheme, exactly as botocore produces it.
enum PresignedConnectToken {
    /// How long RDS, ElastiCache and MemoryDB accept such a token.
    static let lifetime = 900

    /// `host[:port]/?Action=connect&userParameter=user[&extra]&X-Amz-...` for `host` and `port` as
    /// given; the signed `host` header is lower case and leaves out port 443, as botocore signs it.
    static func make(host: String, port: Int?, userParameter: StaticString, user: String,
                     extra: (name: StaticString, value: StaticString)? = nil,
                     service: String, region: String, credentials: AWSCredentials, at date: Date) -> SignedToken {
        var parameters = SigV4Canonical.QueryParameters()
        parameters.append(encodedName: "Action") { $0.append(contentsOf: "connect".utf8) }
        parameters.append(encodedName: userParameter) { PercentEncoding.append(user, to: &$0) }
        if let extra {
            parameters.append(encodedName: extra.name) {
                $0.append(contentsOf: UnsafeBufferPointer(start: extra.value.utf8Start, count: extra.value.utf8CodeUnitCount))
            }
        }
        var token: [UInt8] = []
        token.reserveCapacity(host.utf8.count + 8 + 2 * parameters.byteCount + 400
                              + 3 * (credentials.sessionToken?.reveal().utf8.count ?? 0))
        token.append(contentsOf: host.utf8)
        if let port {
            token.append(UInt8(ascii: ":"))
            SigV4Canonical.appendDecimal(port, to: &token)
        }
        token.append(contentsOf: "/?".utf8)
        SigV4Signer(credentials: credentials, region: region, service: service)
            .appendPresignedQuery(host: host, port: port, parameters: consume parameters, expires: lifetime, at: date, to: &token)
        let ownExpiry = date.addingTimeInterval(TimeInterval(lifetime))
        let expiresAt = credentials.expiration.map { min($0, ownExpiry) } ?? ownExpiry
        return SignedToken(token: Secret(String(decoding: token, as: UTF8.self)), issuedAt: date, expiresAt: expiresAt)
    }
}

/// The IAM authentication token for RDS and Aurora (PostgreSQL, MySQL): the password for `user`.
public enum RDSAuthToken {
    /// `host:port/?Action=connect&DBUser=...&X-Amz-...`, signed for service `rds-db`, valid 900 s.
    public static func make(host: String, port: Int, user: String, region: String,
                            credentials: AWSCredentials, at date: Date) -> SignedToken {
        PresignedConnectToken.make(host: host, port: port, userParameter: "DBUser", user: user,
                                   service: "rds-db", region: region, credentials: credentials, at: date)
    }
}

/// The IAM authentication token for ElastiCache (Redis OSS, Valkey) and MemoryDB: the password
/// for the cache user.
public enum ElastiCacheAuthToken {
    /// Which service the cache belongs to; it is the signing name.
    public enum Service: String, Sendable, CaseIterable {
        case elasticache
        case memorydb
    }

    /// `cache_name/?Action=connect&User=...[&ResourceType=ServerlessCache]&X-Amz-...`, valid 900 s.
    /// `cacheName` is the replication group, serverless cache or MemoryDB cluster name.
    public static func make(cacheName: String, user: String, serverless: Bool = false, service: Service = .elasticache,
                            region: String, credentials: AWSCredentials, at date: Date) -> SignedToken {
        PresignedConnectToken.make(host: cacheName, port: nil, userParameter: "User", user: user,
                                   extra: serverless ? ("ResourceType", "ServerlessCache") : nil,
                                   service: service.rawValue, region: region, credentials: credentials, at: date)
    }
}
