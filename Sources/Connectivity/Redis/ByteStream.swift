internal import COpenSSL
import CloudAuth
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

extension StreamSocket: ByteStream {
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
                                   remedy: "set ca_file to a readable PEM bundle")
            }
        } else {
            SSL_CTX_set_default_verify_paths(handle)
        }
    }

    deinit { SSL_CTX_free(handle) }
}

/// A TLS session over a ``StreamSocket``: the handshake verifies the chain and the server name.
///
/// OpenSSL reads and writes memory buffers; this class moves the bytes to and from the socket
/// itself, so every wait has a deadline and every send uses MSG_NOSIGNAL (OpenSSL's socket BIO
/// calls write(), which raises SIGPIPE when the server has gone).
final class TLSStream: ByteStream {
    private let socket: StreamSocket
    private let context: TLSContext
    private let session: OpaquePointer
    /// Encrypted bytes from the server, for OpenSSL to read; owned by `session`.
    private let incoming: OpaquePointer
    /// Encrypted bytes from OpenSSL, to send; owned by `session`.
    private let outgoing: OpaquePointer
    private let serverName: String
    /// Bytes received from the server so far.
    private var received = 0
    private let readBuffer: UnsafeMutableRawBufferPointer

    /// Connects TLS over `socket` and completes the handshake before `deadline`.
    init(socket: StreamSocket, settings: TLSSettings, deadline: Deadline) throws(ProbeFailure) {
        self.socket = socket
        context = try TLSContext(settings: settings)
        guard let session = SSL_new(context.handle) else {
            throw ProbeFailure(.tlsFailed, "OpenSSL could not create a session: \(openSSLErrorText())")
        }
        guard let incoming = BIO_new(BIO_s_mem()), let outgoing = BIO_new(BIO_s_mem()) else {
            SSL_free(session)
            throw ProbeFailure(.tlsFailed, "OpenSSL could not create buffers: \(openSSLErrorText())")
        }
        SSL_set_bio(session, incoming, outgoing)
        self.session = session
        self.incoming = incoming
        self.outgoing = outgoing
        readBuffer = .allocate(byteCount: 16 * 1024, alignment: 1)
        serverName = settings.serverName
        // Without the expected name OpenSSL checks only the chain: refuse to go on.
        guard SSL_set1_host(session, serverName) == 1 else {
            throw ProbeFailure(.invalidInput, "'\(serverName)' cannot be checked against a certificate")
        }
        if !Self.isIPAddress(serverName) {
            credagent_SSL_set_tlsext_host_name(session, serverName)
        }
        do {
            try drive(deadline: deadline, activity: "in the TLS handshake") { SSL_connect(session) }
        } catch let failure where failure.cause == .timeout && received == 0 {
            // A TLS server answers a ClientHello at once; silence means the port speaks
            // something else (a plain Redis port waits for a newline that never comes).
            throw ProbeFailure(.tlsUnavailable,
                               "no answer to the TLS handshake within \(StreamSocket.format(deadline.seconds)) s",
                               remedy: Self.notTLSRemedy)
        } catch let failure where failure.cause == .tlsFailed {
            throw handshakeFailure(failure)
        }
    }

    deinit {
        SSL_free(session)
        readBuffer.deallocate()
    }

    private static func isIPAddress(_ name: String) -> Bool {
        HostAddress.ipVersion(name) != nil
    }

    /// Runs an OpenSSL operation until it completes, sending what it produced and feeding it what
    /// the server sent. Returns false when the server closed the connection cleanly.
    @discardableResult
    private func drive(deadline: Deadline, activity: String, _ operation: () -> Int32) throws(ProbeFailure) -> Bool {
        while true {
            ERR_clear_error()
            let result = operation()
            let error = SSL_get_error(session, result)
            try flush(deadline: deadline)
            if result == 1 { return true }
            switch error {
            case SSL_ERROR_WANT_READ: try fill(deadline: deadline, activity: activity)
            case SSL_ERROR_WANT_WRITE: continue
            case SSL_ERROR_ZERO_RETURN: return false
            default:
                if ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING || ERR_peek_last_error() == 0 {
                    throw ProbeFailure(.closed, "the server closed the connection \(activity)", remedy: StreamSocket.closedRemedy)
                }
                throw ProbeFailure(.tlsFailed, "TLS failed \(activity) (\(openSSLErrorText()))")
            }
        }
    }

    /// Sends everything OpenSSL has queued.
    private func flush(deadline: Deadline) throws(ProbeFailure) {
        var pending: UnsafeMutablePointer<CChar>?
        // BIO_get_mem_data is a macro over BIO_ctrl.
        let count = BIO_ctrl(outgoing, BIO_CTRL_INFO, 0, &pending)
        guard count > 0, let pending else { return }
        try socket.write(UnsafeRawBufferPointer(start: pending, count: count), deadline: deadline)
        // BIO_reset on a writable memory BIO discards what was sent.
        BIO_ctrl(outgoing, BIO_CTRL_RESET, 0, nil)
    }

    /// Waits for bytes from the server and hands them to OpenSSL; at the end of the stream, tells
    /// OpenSSL so (a memory BIO otherwise asks to retry forever).
    private func fill(deadline: Deadline, activity: String) throws(ProbeFailure) {
        let count = try socket.read(into: readBuffer, deadline: deadline, activity: activity)
        received += count
        if count == 0 {
            // BIO_set_mem_eof_return is a macro over BIO_ctrl.
            BIO_ctrl(incoming, BIO_C_SET_BUF_MEM_EOF_RETURN, 0, nil)
        } else {
            BIO_write(incoming, readBuffer.baseAddress, Int32(count))
        }
    }

    private static let notTLSRemedy = "the port does not seem to serve TLS: use the server's TLS port, or turn tls off for a plain port"

    /// Explains a failed handshake: the certificate check first, then what OpenSSL saw.
    private func handshakeFailure(_ failure: ProbeFailure) -> ProbeFailure {
        let verify = SSL_get_verify_result(session)
        if verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH {
            return ProbeFailure(.hostnameMismatch, "the server certificate does not name '\(serverName)' (\(verifyText(verify)))",
                                remedy: "connect with a host name the certificate names, or set the expected server name")
        }
        if verify != X509_V_OK {
            return ProbeFailure(.untrustedCertificate, "the server certificate is not trusted (\(verifyText(verify)))",
                                remedy: "set ca_file to the CA bundle that signed the server certificate")
        }
        let reason = ERR_GET_REASON(ERR_peek_last_error())
        if reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG || reason == SSL_R_HTTP_REQUEST {
            return ProbeFailure(.tlsUnavailable, "the server did not answer with TLS (\(openSSLErrorText()))",
                                remedy: Self.notTLSRemedy)
        }
        return failure
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
        var count = 0
        let open = try drive(deadline: deadline, activity: "waiting for an answer") {
            SSL_read_ex(session, buffer.baseAddress, buffer.count, &count)
        }
        return open ? count : 0
    }

    func write(_ bytes: UnsafeRawBufferPointer, deadline: Deadline) throws(ProbeFailure) {
        var offset = 0
        while offset < bytes.count {
            var count = 0
            try drive(deadline: deadline, activity: "sending") {
                SSL_write_ex(session, bytes.baseAddress! + offset, bytes.count - offset, &count)
            }
            offset += count
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
