import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Facts about a host name or address as written in a URL or a config.
public enum HostAddress {
    /// Whether `host` is this machine, where a token sent without TLS never leaves the host:
    /// `localhost`, `127.0.0.0/8`, `::1` (bracketed or not, any case), or a Unix socket directory
    /// (libpq's `host=/run/postgresql`).
    public static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: ["[", "]"]).lowercased()
        return bare == "localhost" || bare.hasPrefix("127.") || bare == "::1" || bare.hasPrefix("/")
    }

    /// The IP version of `text` when it is an IPv4 (4) or IPv6 (6) address literal (no brackets);
    /// nil for a name. The address is parsed into a plain buffer, not `in_addr`/`in6_addr`, whose
    /// C declarations Swift does not always attribute to the module that imports them.
    public static func ipVersion(_ text: String) -> Int? {
        var address = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, text, &address) == 1 { return 4 }
        if inet_pton(AF_INET6, text, &address) == 1 { return 6 }
        return nil
    }
}
