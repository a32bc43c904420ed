import Foundation

/// Durations as written in the config: a number and a unit, `500ms`, `300s`, `5m`, `1h`.
public enum DurationText {
    /// "ms" comes before "m" and "s": it is tried first.
    private static let units: [(suffix: String, length: Duration)] = [
        ("ms", .milliseconds(1)), ("s", .seconds(1)), ("m", .seconds(60)), ("h", .seconds(3600)),
    ]

    /// Beyond this many seconds (over 3,000 billion years) a duration is taken as this long: no
    /// setting takes that much, and it keeps the arithmetic on it from overflowing.
    private static let longestSeconds: Double = 1e20

    /// The duration `text` stands for, exactly as written, or nil when it is not a duration.
    public static func duration(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            let number = trimmed.dropLast(unit.suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let value = Double(number), value.isFinite else { return nil }
            let seconds = value * (unit.length / .seconds(1))
            guard seconds < 1e12 else { return .seconds(min(seconds, longestSeconds)) }
            // Whole units and up to 15 decimals of one (below an attosecond for milliseconds), in
            // integers: `0.1s` is 100 ms exactly.
            let parts = number.split(separator: ".", omittingEmptySubsequences: false)
            let decimals = parts.count > 1 ? parts[1].prefix(15) : ""
            let whole = Int(parts[0]) ?? 0
            let fraction = Int(decimals) ?? 0
            return unit.length * whole + unit.length / Int(pow(10, Double(decimals.count))) * fraction
        }
        return nil
    }

    /// The shortest exact text for `duration`, for messages and docs (`90s`, `5m`, `500ms`).
    public static func format(_ duration: Duration) -> String {
        // Beyond whole numbers of milliseconds in an Int: as the number is (a config may say anything).
        let seconds = duration / .seconds(1)
        guard seconds.magnitude < 1e12 else { return "\(seconds)s" }
        let (whole, attoseconds) = duration.components
        guard attoseconds == 0 else { return "\(Int((duration / .milliseconds(1)).rounded()))ms" }
        if whole >= 3600, whole % 3600 == 0 { return "\(whole / 3600)h" }
        if whole >= 60, whole % 60 == 0 { return "\(whole / 60)m" }
        return "\(whole)s"
    }
}

extension Duration {
    /// This duration in seconds, for arithmetic on `Date`s: the nearest `TimeInterval` to any
    /// whole number of milliseconds (so `300s` and `1.5s` are exactly `300` and `1.5`).
    public var timeInterval: TimeInterval {
        // Far beyond any setting, where a millisecond is below a Double's precision anyway.
        guard self < .seconds(1 << 42), self > .seconds(-(1 << 42)) else { return self / .seconds(1) }
        let (seconds, attoseconds) = components
        let millisecond: Int64 = 1_000_000_000_000_000
        guard attoseconds % millisecond == 0 else { return self / .seconds(1) }
        // One rounding: the milliseconds, an integer below 2^53, are exact as a Double.
        return Double(seconds * 1000 + attoseconds / millisecond) / 1000
    }
}
