import Wire

/// The 128-bit hash of every page as the destination holds it: the identity of a
/// stale copy in a refresh request (so the source can answer "unchanged"), and
/// the input of the end-to-end digest compared with the source's.
///
/// Threading: the destination's loop thread, except the pages a `BackgroundInstaller`
/// holds (`.arriving`): its worker records those, and publishes them with the
/// release store of its done index, which the loop loads with acquire before it
/// collects them. No page is written by both. Allocated once; nothing per page.
final class ReceivedHashes {
    let pageCount: Int
    let pageSize: Int
    private let hashes: UnsafeMutablePointer<UInt128>
    /// The hash of an all-zero page, for pages that arrive as `zeroPages` runs.
    private let zeroHash: UInt128

    init(pageCount: Int, pageSize: Int) {
        self.pageCount = pageCount
        self.pageSize = pageSize
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        zeroHash = PageHash.hash(UnsafeRawBufferPointer(zeros))
        zeros.deallocate()
        hashes = .allocate(capacity: pageCount)
        hashes.initialize(repeating: 0, count: pageCount)
    }

    deinit { hashes.deallocate() }

    /// Records the hash of `bytes`, the page now held for `page`.
    @inline(__always) func record(_ page: Int, bytes: UnsafeRawPointer) {
        hashes[page] = PageHash.hash(UnsafeRawBufferPointer(start: bytes, count: pageSize))
    }

    /// Records that `page` now holds zeros.
    @inline(__always) func recordZero(_ page: Int) {
        hashes[page] = zeroHash
    }

    /// The 16 bytes of `page`'s hash, as a request frame carries them.
    @inline(__always) func bytes(of page: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: hashes + page, count: MemoryLayout<UInt128>.size)
    }

    /// The digest of the whole arena as received.
    func digest() -> UInt128 {
        var digest = ArenaDigest()
        for page in 0..<pageCount { digest.add(page: UInt64(page), hash: hashes[page]) }
        return digest.value
    }
}
