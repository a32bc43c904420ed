import Foundation

/// Durations as written in the config: a number and a unit, `500ms`, `300s`, `5m`, `1h`.
public enum DurationText {
    private static let units: [(suffix: String, seconds: Double)] = [
        ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600),
    ]

    /// The number of seconds `text` stands for, or nil when it is not a duration.
    public static func seconds(_ text: String) -> TimeInterval? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        // "ms" must be tried before "m" and "s".
        for unit in units.sorted(by: { $0.suffix.count > $1.suffix.count }) where trimmed.hasSuffix(unit.suffix) {
            let number = trimmed.dropLast(unit.suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let value = Double(number), value.isFinite else { return nil }
            return value * unit.seconds
        }
        return nil
    }

    /// The shortest exact text for `seconds`, for messages and docs (`90s`, `5m`, `500ms`).
    public static func format(_ seconds: TimeInterval) -> String {
        // Beyond whole numbers of milliseconds in an Int: as the number is (a config may say anything).
        guard seconds.magnitude < 1e12 else { return "\(seconds)s" }
        if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600))h" }
        if seconds >= 60, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))m" }
        if seconds.rounded() == seconds { return "\(Int(seconds))s" }
        return "\(Int((seconds * 1000).rounded()))ms"
    }
}
