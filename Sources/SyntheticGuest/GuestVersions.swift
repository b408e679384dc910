import MigrateAgent
/// The version of every page, as the guest last wrote it: the guest's state
/// that moves at switch-over. Guest thread `t` of `n` writes only pages with
/// `index % n == t`, so entries are never written by two threads.
public final class GuestVersions: @unchecked Sendable {
    public let pageCount: Int
    let versions: UnsafeMutablePointer<UInt32>

    public init(pageCount: Int, initial: UInt32 = 0) {
        self.pageCount = pageCount
        versions = .allocate(capacity: pageCount)
        versions.initialize(repeating: initial, count: pageCount)
    }

    /// Decodes the switch-over state (little-endian UInt32 per page).
    public init?(encoded bytes: UnsafeRawBufferPointer, pageCount: Int) {
        guard bytes.count == pageCount * 4 else { return nil }
        self.pageCount = pageCount
        versions = .allocate(capacity: pageCount)
        for i in 0..<pageCount { versions[i] = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
    }

    deinit { versions.deallocate() }

    public subscript(page: Int) -> UInt32 {
        get { versions[page] }
        set { versions[page] = newValue }
    }

    /// The switch-over encoding.
    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: pageCount * 4)
        bytes.withUnsafeMutableBytes { raw in
            for i in 0..<pageCount { raw.storeBytes(of: versions[i].littleEndian, toByteOffset: i * 4, as: UInt32.self) }
        }
        return bytes
    }
}
