import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP socket bound to a free port of 127.0.0.1, listening with `backlog` when given (else
/// only bound: a connection to it is refused, and no other test can take the port meanwhile).
/// The caller closes the descriptor.
public func loopbackSocket(listening backlog: Int32? = nil) throws -> (descriptor: Int32, port: Int) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ready = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(descriptor, pointer, length) == 0 && (backlog.map { listen(descriptor, $0) == 0 } ?? true)
                && getsockname(descriptor, pointer, &length) == 0
        }
    }
    guard ready else {
        let error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EADDRINUSE)
        close(descriptor)
        throw error
    }
    return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
}
