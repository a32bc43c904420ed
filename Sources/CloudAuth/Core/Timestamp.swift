import Foundation

/// RFC 3339 timestamps in UTC, written and read without Foundation's formatter classes (which are
/// neither cheap nor documented as thread-safe on Linux). The one way the project writes a time:
/// the socket API, logs, errors and the CLI.
public enum Timestamp {
    /// The latest instant written: 9999-12-31T23:59:59Z, four-digit years being the format.
    static let latest: TimeInterval = 253_402_300_799

    /// `date` to the second, e.g. `2026-11-22T10:00:00Z`; dates before 1970 or after ``latest``
    /// (and non-finite ones) are clamped to those bounds rather than overflowing `time_t`.
    public static func format(_ date: Date) -> String {
        let parts = fields(date)
        return parts.date + "Z"
    }

    /// `date` to the millisecond, e.g. `2026-11-22T10:00:00.123Z` (log lines).
    public static func formatMilliseconds(_ date: Date) -> String {
        let parts = fields(date)
        let millis = Int((parts.clamped * 1000).rounded(.down)) % 1000
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.date).\(fraction)Z"
    }

    private static func fields(_ date: Date) -> (date: String, clamped: TimeInterval) {
        let interval = date.timeIntervalSince1970
        let clamped = interval.isNaN ? 0 : min(max(interval, 0), latest)
        var seconds = time_t(clamped.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let text = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
        return (text, clamped)
    }

    /// Reads an RFC 3339 timestamp: `2026-11-22T10:00:00Z`, with any fraction of a second
    /// (`.123456`) and a `Z` or `±hh:mm` offset; `t` and `z` are accepted for `T` and `Z`.
    /// Nil for anything else, out-of-range fields included.
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ digits: Int) -> Int? {
            guard index + digits <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<index + digits] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            index += digits
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2),
              expect("Tt "), let hour = number(2), expect(":"), let minute = number(2), expect(":"),
              let second = number(2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var fraction = 0.0
        if expect(".") {
            var scale = 0.1
            let start = index
            while index < bytes.count, (0x30...0x39).contains(bytes[index]) {
                fraction += Double(bytes[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if !expect("Zz") {
            guard index < bytes.count else { return nil }
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            guard expect("+-"), let hours = number(2), expect(":"), let minutes = number(2), hours < 24, minutes < 60 else {
                return nil
            }
            offset = sign * (hours * 3600 + minutes * 60)
        }
        guard index == bytes.count else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        return Date(timeIntervalSince1970: TimeInterval(seconds - offset) + fraction)
    }
}
