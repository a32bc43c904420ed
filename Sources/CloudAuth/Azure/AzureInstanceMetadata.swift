/// The VM facts Vault's azure auth method sends with a login, from IMDS
/// `/metadata/instance?api-version=2021-02-01` (`compute` section).
public struct AzureInstanceMetadata: Sendable, Equatable {
    public var subscriptionID: String
    public var resourceGroup: String
    /// The VM's name (for a scale-set instance, the instance's name).
    public var vmName: String
    /// The scale set's name when the VM belongs to one; Vault then wants `vmss_name`.
    public var vmScaleSetName: String?
    /// The VM's ARM resource id.
    public var resourceID: String
    public var location: String?

    public init(subscriptionID: String, resourceGroup: String, vmName: String, vmScaleSetName: String?,
                resourceID: String, location: String?) {
        self.subscriptionID = subscriptionID
        self.resourceGroup = resourceGroup
        self.vmName = vmName
        self.vmScaleSetName = vmScaleSetName
        self.resourceID = resourceID
        self.location = location
    }

    /// Parses an instance metadata document; `source` names the endpoint for errors.
    public init(parsing body: [UInt8], source: String) throws {
        guard let object = JSONFields.object(body), let compute = object["compute"] as? [String: any Sendable] else {
            throw CloudAuthError(.malformedResponse, source: source, "the answer is not an instance metadata document with a 'compute' object")
        }
        func field(_ name: String) throws -> String {
            guard let value = compute[name] as? String, !value.isEmpty else {
                throw CloudAuthError(.malformedResponse, source: source, "the 'compute' object has no '\(name)'")
            }
            return value
        }
        let scaleSet = compute["vmScaleSetName"] as? String
        self.init(subscriptionID: try field("subscriptionId"), resourceGroup: try field("resourceGroupName"),
                  vmName: try field("name"), vmScaleSetName: scaleSet?.isEmpty == false ? scaleSet : nil,
                  resourceID: try field("resourceId"), location: compute["location"] as? String)
    }
}
