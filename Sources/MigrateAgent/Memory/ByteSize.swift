/// A size given on the command line: `4096`, `64KiB`, `256MiB`, `1GiB` (also
/// `K`/`M`/`G`, `KB`/`MB`/`GB` as powers of 1024, as memory sizes are).
public struct ByteSize: Sendable, Hashable, CustomStringConvertible {
    public let bytes: Int

    public init(bytes: Int) { self.bytes = bytes }

    public init(parsing text: String) throws(AgentError) {
        let trimmed = text.trimmed
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = String(trimmed.dropFirst(digits.count)).trimmed.lowercased()
        let multipliers: [String: Int] = [
            "": 1, "b": 1,
            "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
            "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
            "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
        ]
        guard !digits.isEmpty, let value = Int(digits), let multiplier = multipliers[unit] else {
            throw .invalidArgument("invalid size '\(text)': expected a number with an optional unit, like 256MiB or 1GiB")
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw .invalidArgument("invalid size '\(text)': too large") }
        bytes = product
    }

    /// The size as a whole number of `pageSize` pages, or a clear error.
    public func pages(of pageSize: Int) throws(AgentError) -> Int {
        guard bytes > 0 else { throw .invalidArgument("invalid size \(self): must be larger than zero") }
        guard bytes % pageSize == 0 else {
            throw .invalidArgument("invalid size \(bytes) bytes: not a whole number of \(pageSize)-byte pages")
        }
        return bytes / pageSize
    }

    public var description: String {
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift) \(unit)"
        }
        return "\(bytes) bytes"
    }
}
