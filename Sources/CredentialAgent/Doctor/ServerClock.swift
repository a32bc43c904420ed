import CloudAuth
import Foundation
import Synchronization

/// An HTTP client that passes every request to another and remembers, of the last answer that
/// carried a `Date` header, which endpoint sent it and how far that date is from this machine's
/// clock (measured at the middle of the exchange; the header's one-second resolution makes it
/// good to about a second).
final class ServerClock: HTTPClient {
    /// One comparison of an endpoint's `Date` with this machine's clock.
    struct Reading: Sendable {
        /// The URL without its query.
        var endpoint: String
        /// The endpoint's time minus this machine's, in seconds.
        var skew: TimeInterval
    }

    private let base: any HTTPClient
    private let last = Mutex<Reading?>(nil)

    init(_ base: any HTTPClient) { self.base = base }

    /// The latest reading, if any answer was dated.
    var reading: Reading? { last.withLock { $0 } }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let sent = Date()
        let response = try await base.execute(request)
        let received = Date()
        if let text = response.headers["Date"], let date = HTTPDate.parse(text) {
            // The header truncates to the second: the server's time lies within the second it names.
            let middle = sent.addingTimeInterval(received.timeIntervalSince(sent) / 2)
            let reading = Reading(endpoint: EndpointURL.stripQuery(request.url),
                                  skew: date.timeIntervalSince(middle) + 0.5)
            last.withLock { $0 = reading }
        }
        return response
    }
}
