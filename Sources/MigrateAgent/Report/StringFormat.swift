import FoundationEssentials
import Glibc

extension String {
    /// A `printf`-formatted string (`%.1f`, `%d`, `%llu`...), as Foundation's
    /// `String(format:)`, without loading Foundation: the agents link only
    /// FoundationEssentials, which has no formatting. No `%@`: pass strings by interpolation.
    public init(format: String, _ arguments: any CVarArg...) {
        var buffer = [CChar](repeating: 0, count: 64)
        while true {
            let needed = withVaList(arguments) { vsnprintf(&buffer, buffer.count, format, $0) }
            guard needed >= buffer.count else { break }
            buffer = [CChar](repeating: 0, count: Int(needed) + 1)
        }
        self = String(cString: buffer)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line breaks (Foundation's
    /// `trimmingCharacters(in: .whitespacesAndNewlines)`).
    public var trimmed: String {
        let isSpace: (Character) -> Bool = { $0.isWhitespace || $0.isNewline }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

extension Error {
    /// One line for a message: the system's reason for a failed file operation
    /// ("No such file or directory", as Foundation's `localizedDescription`
    /// gives it; FoundationEssentials' `CocoaError` prints its whole structure),
    /// else the error's own description.
    public var reasonText: String {
        let posix = (self as? POSIXError) ?? ((self as? CocoaError)?.userInfo["NSUnderlyingError"] as? POSIXError)
        if let posix { return String(cString: strerror(posix.code.rawValue)) }
        return "\(self)"
    }
}
