import CLibUV
import Glibc

/// An IPv4 or IPv6 address and port, parsed from `HOST:PORT` or `[V6]:PORT`.
/// Host names are not resolved: the agents take numeric addresses.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(AgentError) {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                throw .invalidArgument("invalid port in '\(text)': expected [IPV6]:PORT, like [::1]:7000")
            }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            throw .invalidArgument("invalid address '\(text)': expected HOST:PORT, like 127.0.0.1:7000")
        }
        if host == "localhost" { host = "127.0.0.1" }
        guard let port = UInt16(portText) else {
            throw .invalidArgument("invalid port in '\(text)': expected a number from 0 to 65535")
        }
        self.host = String(host)
        self.port = port
        guard (withSockAddr { _ in 0 }) == 0 else {
            throw .invalidArgument("invalid address '\(text)': '\(host)' is not a numeric IPv4 or IPv6 address")
        }
    }

    /// Calls `body` with a `sockaddr` for this address, or returns -1 when the host does not parse.
    @discardableResult
    func withSockAddr(_ body: (UnsafePointer<sockaddr>) -> Int32) -> Int32 {
        var storage = sockaddr_storage()
        return withUnsafeMutableBytes(of: &storage) { raw -> Int32 in
            let sa = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
            if host.contains(":") {
                guard uv_ip6_addr(host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)) == 0 else { return -1 }
            } else {
                guard uv_ip4_addr(host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)) == 0 else { return -1 }
            }
            return body(sa)
        }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
