/// Which Azure identity to use and where to reach it; mirrors the `azure:` config section.
/// Every field is optional: unset, the standard environment variables and endpoints apply.
public struct AzureSettings: Sendable, Equatable {
    /// A user-assigned identity's client id (IMDS `client_id`, App Service `client_id`); for
    /// workload identity, the app registration's client id (else `AZURE_CLIENT_ID`).
    public var clientID: String?
    /// Workload identity's tenant (else `AZURE_TENANT_ID`).
    public var tenantID: String?
    /// IMDS base URL, scheme://host[:port] (else `IMDS_ENDPOINT`, else `http://169.254.169.254`).
    public var imdsEndpoint: String?
    /// A user-assigned identity's object (principal) id.
    public var objectID: String?
    /// A user-assigned identity's ARM resource id.
    public var resourceID: String?

    public init(clientID: String? = nil, tenantID: String? = nil, imdsEndpoint: String? = nil,
                objectID: String? = nil, resourceID: String? = nil) {
        self.clientID = clientID
        self.tenantID = tenantID
        self.imdsEndpoint = imdsEndpoint
        self.objectID = objectID
        self.resourceID = resourceID
    }
}

/// The resource (audience) URIs of the services credagent obtains Azure tokens for.
public enum AzureResource {
    /// Azure Database for PostgreSQL (Entra authentication).
    public static let postgres = "https://ossrdbms-aad.database.windows.net"
    /// Azure Cache for Redis / Azure Managed Redis (Entra authentication).
    public static let redis = "https://redis.azure.com"
    /// Azure Resource Manager: what Vault's azure auth method expects by default.
    public static let management = "https://management.azure.com/"

    /// Resolves the short names `postgres`, `redis` and `management`; any other text is taken
    /// as a resource URI as it is.
    public static func named(_ name: String) -> String {
        switch name {
        case "postgres": return postgres
        case "redis": return redis
        case "management", "arm", "vault": return management
        default: return name
        }
    }
}
