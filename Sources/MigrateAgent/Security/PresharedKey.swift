import Crypto
import Glibc

/// The secret both agents hold: every connection proves it before any page or
/// size moves (`KeyProof`). Read from a file that only its owner may read,
/// like ssh treats a private key.
public struct PresharedKey: Sendable {
    /// Fewer bytes than this are refused: a short key can be guessed.
    public static let minimumBytes = 32
    /// Larger files are refused: a key file is small, anything big is a mistake.
    static let maximumBytes = 4096

    let key: SymmetricKey

    public init(bytes: [UInt8]) throws(AgentError) {
        guard bytes.count >= Self.minimumBytes else {
            throw .invalidArgument("a pre-shared key needs at least \(Self.minimumBytes) bytes, this one has \(bytes.count)")
        }
        key = SymmetricKey(data: bytes)
    }

    /// Loads the key from `path`: a regular file of 32 to 4096 bytes, not
    /// readable or writable by anyone but its owner.
    public static func load(path: String) throws(AgentError) -> PresharedKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .invalidArgument("cannot open the key file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system("fstat of the key file \(path): \(String(cString: strerror(errno)))") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .invalidArgument("the key file \(path) is not a regular file") }
        guard info.st_mode & 0o077 == 0 else {
            throw .invalidArgument("the key file \(path) is accessible by others than its owner "
                + "(mode \(String(info.st_mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        guard info.st_size <= maximumBytes else {
            throw .invalidArgument("the key file \(path) has \(info.st_size) bytes; a key file holds \(minimumBytes)...\(maximumBytes)")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw .system("cannot read the key file \(path)") }
        return try PresharedKey(bytes: bytes)
    }

    /// Writes a new random key of `minimumBytes` bytes to `path` (mode 0600);
    /// refuses to overwrite an existing file.
    public static func generate(path: String) throws(AgentError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .invalidArgument("cannot create the key file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let key = SymmetricKey(size: .bits256)
        let written = key.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == minimumBytes else { throw .system("cannot write the key file \(path)") }
    }
}
