import Foundation

/// Facts about a host name or address as written in a URL or a config.
public enum HostAddress {
    /// Whether `host` is this machine, where a token sent without TLS never leaves the host:
    /// `localhost`, `127.0.0.0/8`, `::1` (bracketed or not, any case), or a Unix socket directory
    /// (libpq's `host=/run/postgresql`).
    public static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: ["[", "]"]).lowercased()
        return bare == "localhost" || bare.hasPrefix("127.") || bare == "::1" || bare.hasPrefix("/")
    }
}
