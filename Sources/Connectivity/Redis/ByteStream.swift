internal import COpenSSL
import Foundation

/// A connected byte stream with deadlines: plain TCP or TLS over TCP. The Redis protocol code
/// runs on either, so there is one protocol implementation.
protocol ByteStream: AnyObject {
    /// Reads what is available, waiting for something first; 0 means the peer closed.
    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline) throws(ProbeFailure) -> Int
    /// Writes all of `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer, deadline: Deadline) throws(ProbeFailure)
    /// `protocol cipher` when the stream is encrypted, nil otherwise.
    var tlsDescription: String? { get }
}

extension TCPSocket: ByteStream {
    var tlsDescription: String? { nil }
}

/// How to verify the server in a TLS handshake.
struct TLSSettings {
    /// PEM bundle of CAs to trust; the system store when nil.
    var caFile: String?
    /// The name the certificate must carry (DNS name or IP address); also sent as SNI when it is
    /// a DNS name.
    var serverName: String
}

/// An OpenSSL client context (`SSL_CTX`): TLS 1.2 or later, peer verification on.
final class TLSContext {
    let handle: OpaquePointer

    init(settings: TLSSettings) throws(ProbeFailure) {
        guard let handle = SSL_CTX_new(TLS_client_method()) else {
            throw ProbeFailure(.tlsFailed, "OpenSSL could not create a TLS context: \(openSSLErrorText())")
        }
        self.handle = handle
        // SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
        SSL_CTX_ctrl(handle, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        SSL_CTX_set_verify(handle, SSL_VERIFY_PEER, nil)
        if let caFile = settings.caFile {
            guard SSL_CTX_load_verify_locations(handle, caFile, nil) == 1 else {
                throw ProbeFailure(.invalidInput, "CA file \(caFile) could not be loaded: \(openSSLErrorText())",
                                   hint: "set ca_file to a readable PEM bundle")
            }
        } else {
            SSL_CTX_set_default_verify_paths(handle)
        }
    }

    deinit { SSL_CTX_free(handle) }
}

/// A TLS session over a ``TCPSocket``: the handshake verifies the chain and the server name.
final class TLSStream: ByteStream {
    private let socket: TCPSocket
    private let context: TLSContext
    private let session: OpaquePointer

    /// Connects TLS over `socket` and completes the handshake before `deadline`.
    init(socket: TCPSocket, settings: TLSSettings, deadline: Deadline) throws(ProbeFailure) {
        self.socket = socket
        context = try TLSContext(settings: settings)
        guard let session = SSL_new(context.handle) else {
            throw ProbeFailure(.tlsFailed, "OpenSSL could not create a session: \(openSSLErrorText())")
        }
        self.session = session
        SSL_set_fd(session, socket.descriptor)
        SSL_set1_host(session, settings.serverName)
        if !Self.isIPAddress(settings.serverName) {
            credagent_SSL_set_tlsext_host_name(session, settings.serverName)
        }
        try handshake(deadline: deadline)
    }

    deinit { SSL_free(session) }

    private static func isIPAddress(_ name: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
    }

    private func handshake(deadline: Deadline) throws(ProbeFailure) {
        ERR_clear_error()
        while true {
            let result = SSL_connect(session)
            if result == 1 { return }
            let error = SSL_get_error(session, result)
            do throws(ProbeFailure) {
                switch error {
                case SSL_ERROR_WANT_READ:
                    try socket.wait(for: Int16(POLLIN), deadline: deadline, doing: "in the TLS handshake")
                case SSL_ERROR_WANT_WRITE:
                    try socket.wait(for: Int16(POLLOUT), deadline: deadline, doing: "in the TLS handshake")
                default:
                    throw handshakeFailure(error)
                }
            } catch let failure where failure.cause == .timeout && BIO_number_read(SSL_get_rbio(session)) == 0 {
                // A TLS server answers a ClientHello at once; silence means the port speaks
                // something else (a plain Redis port waits for a newline that never comes).
                throw ProbeFailure(.tlsUnavailable,
                                   "no answer to the TLS handshake within \(TCPSocket.format(deadline.seconds)) s",
                                   hint: "the port does not seem to serve TLS: use the server's TLS port, or turn tls off for a plain port")
            } catch {
                throw error
            }
        }
    }

    private func handshakeFailure(_ error: Int32) -> ProbeFailure {
        let verify = SSL_get_verify_result(session)
        if verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH {
            return ProbeFailure(.hostnameMismatch, "the server certificate does not name this host (\(verifyText(verify)))",
                                hint: "connect with a host name the certificate names, or set the expected server name")
        }
        if verify != X509_V_OK {
            return ProbeFailure(.untrustedCertificate, "the server certificate is not trusted (\(verifyText(verify)))",
                                hint: "set ca_file to the CA bundle that signed the server certificate")
        }
        let reason = ERR_GET_REASON(ERR_peek_last_error())
        if reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG || reason == SSL_R_HTTP_REQUEST {
            return ProbeFailure(.tlsUnavailable, "the server did not answer with TLS (\(openSSLErrorText()))",
                                hint: "the port does not seem to serve TLS: use the server's TLS port, or turn tls off for a plain port")
        }
        if reason == SSL_R_UNEXPECTED_EOF_WHILE_READING || (error == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
            return ProbeFailure(.closed, "the server closed the connection during the TLS handshake",
                                hint: "check that the port serves TLS and accepts this client (client certificates?)")
        }
        return ProbeFailure(.tlsFailed, "the TLS handshake failed (\(openSSLErrorText()))")
    }

    private func verifyText(_ code: Int) -> String {
        String(cString: X509_verify_cert_error_string(code))
    }

    var tlsDescription: String? {
        let version = String(cString: SSL_get_version(session))
        guard let cipher = SSL_get_current_cipher(session) else { return version }
        return "\(version) \(String(cString: SSL_CIPHER_get_name(cipher)))"
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline) throws(ProbeFailure) -> Int {
        while true {
            var count = 0
            let result = SSL_read_ex(session, buffer.baseAddress, buffer.count, &count)
            if result == 1 { return count }
            switch SSL_get_error(session, result) {
            case SSL_ERROR_WANT_READ: try socket.wait(for: Int16(POLLIN), deadline: deadline, doing: "waiting for an answer")
            case SSL_ERROR_WANT_WRITE: try socket.wait(for: Int16(POLLOUT), deadline: deadline, doing: "waiting for an answer")
            case SSL_ERROR_ZERO_RETURN: return 0
            case SSL_ERROR_SYSCALL where ERR_peek_last_error() == 0 && errno == 0: return 0
            default:
                if ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING { return 0 }
                throw ProbeFailure(.tlsFailed, "TLS read failed (\(openSSLErrorText()))")
            }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, deadline: Deadline) throws(ProbeFailure) {
        var offset = 0
        while offset < bytes.count {
            var count = 0
            let result = SSL_write_ex(session, bytes.baseAddress! + offset, bytes.count - offset, &count)
            if result == 1 { offset += count; continue }
            switch SSL_get_error(session, result) {
            case SSL_ERROR_WANT_READ: try socket.wait(for: Int16(POLLIN), deadline: deadline, doing: "sending")
            case SSL_ERROR_WANT_WRITE: try socket.wait(for: Int16(POLLOUT), deadline: deadline, doing: "sending")
            default: throw ProbeFailure(.tlsFailed, "TLS write failed (\(openSSLErrorText()))")
            }
        }
    }
}

/// OpenSSL's reason for the most recent error on this thread, e.g. "wrong version number".
private func openSSLErrorText() -> String {
    let code = ERR_peek_last_error()
    guard code != 0 else { return "no details from OpenSSL" }
    guard let reason = ERR_reason_error_string(code) else { return "OpenSSL error \(String(code, radix: 16))" }
    return String(cString: reason)
}
