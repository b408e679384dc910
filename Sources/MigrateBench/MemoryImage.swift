import Glibc
import MigrateAgent
import SyntheticGuest

/// A memory image for the handler-mode runs and the tests: pseudo-random pages
/// (SplitMix64, seeded: the same bytes for the same seed), every eighth page all
/// zero, so that the source sends some pages as `zeroPages` frames, as a snapshot's are.
/// Stateless; any thread.
public enum MemoryImage {
    public static let pageSize = 4096

    /// Writes `bytes` (a positive multiple of the page size) to `path`, created or truncated.
    public static func write(path: String, bytes: Int, seed: UInt64 = 0x6D69_6772_6174_6531) throws(AgentError) {
        precondition(bytes > 0 && bytes % pageSize == 0, "an image is whole pages")
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .system("cannot create the memory image \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let chunkPages = 256  // 1 MiB per write
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkPages * pageSize, alignment: 8)
        defer { buffer.deallocate() }
        var rng = SplitMix64(seed: seed)
        var page = 0
        let pages = bytes / pageSize
        while page < pages {
            let count = min(chunkPages, pages - page)
            let words = buffer.bindMemory(to: UInt64.self)
            for p in 0..<count {
                let range = (p * pageSize / 8)..<((p + 1) * pageSize / 8)
                if (page + p) % 8 == 0 {
                    for i in range { words[i] = 0 }
                } else {
                    for i in range { words[i] = rng.next() }
                }
            }
            var done = 0
            let total = count * pageSize
            while done < total {
                let n = Glibc.write(fd, buffer.baseAddress! + done, total - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw .system("cannot write the memory image \(path): \(String(cString: strerror(errno)))") }
                done += n
            }
            page += count
        }
    }
}
