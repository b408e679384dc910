import CGuestAccess
import Wire

/// What the destination knows of the pages it received: the input of the
/// end-to-end digest compared with the source's, and the 128-bit hash of the
/// copy it holds of a page (a stale copy is named by it in a refresh request,
/// so the source can answer "unchanged").
///
/// Two forms. In our own arena, a *running digest*: each page's hash is added
/// as it is recorded and not kept, so the agent keeps a bit a page instead of
/// 16 bytes. A copy about to be replaced (a page pre-copy sends again, a stale
/// page refreshed) is first `forget`-ten: its hash, taken from the copy still
/// in memory, leaves the digest; a held copy's hash is likewise hashed from
/// memory when a request names it (a backend that drops stale copies, `missing`,
/// forgets them at switch-over, before it drops them). A page recorded twice
/// without that (never expected) cannot take its first hash back: the digest
/// is then computed from the arena itself at the end, which can only fail the
/// comparison if the guest wrote meanwhile (a false alarm, never a false
/// match). A VMM's memory keeps a *table* of every page's
/// hash instead: a removed page turns to zeros under the kernel's hands, its
/// old bytes gone before they could be hashed.
///
/// Threading: the destination's loop thread, except the pages a `BackgroundInstaller`
/// holds (`.arriving`): its worker records those (`recordOnWorker`, into a
/// running sum of its own), and publishes them with the release store of its
/// done index, which the loop loads with acquire before it collects them. No
/// page is written by both. Allocated once; nothing per page.
final class ReceivedHashes {
    let pageCount: Int
    let pageSize: Int
    /// Every page's hash in the table form; lazily backed (`calloc`), so it costs nothing while running.
    private let hashes: UnsafeMutablePointer<UInt128>
    let keepsTable: Bool
    /// Running form: the digest of the pages the loop recorded, and of those the worker recorded.
    private var loopDigest = ArenaDigest()
    private let workerDigest: UnsafeMutablePointer<ArenaDigest>
    /// Running form: a bit per page whose hash is in the digest (set by either thread, atomically).
    private let recorded: UnsafeMutablePointer<UInt64>
    private let recordedAgain: UnsafeMutablePointer<UInt8>
    /// Where the held copies are, to hash one that is replaced or named, or all if the running digest cannot be trusted.
    private let arena: Arena?
    /// The hash of an all-zero page, for pages that arrive as `zeroPages` runs.
    private let zeroHash: UInt128

    /// `keepsTable`: a VMM's memory (without an arena of our own, always).
    init(pageCount: Int, pageSize: Int, arena: Arena?, keepsTable: Bool) {
        self.pageCount = pageCount
        self.pageSize = pageSize
        self.arena = arena
        self.keepsTable = keepsTable || arena == nil
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        zeroHash = PageHash.hash(UnsafeRawBufferPointer(zeros))
        zeros.deallocate()
        hashes = ZeroedArray.allocate(UInt128.self, count: pageCount)
        recorded = ZeroedArray.allocate(UInt64.self, count: (pageCount + 63) / 64)
        recordedAgain = ZeroedArray.allocate(UInt8.self, count: 1)
        workerDigest = .allocate(capacity: 1)
        workerDigest.initialize(to: ArenaDigest())
    }

    deinit {
        ZeroedArray.free(hashes)
        ZeroedArray.free(recorded)
        ZeroedArray.free(recordedAgain)
        workerDigest.deallocate()
    }

    /// The copy of `page` held here is about to be replaced (loop thread, before
    /// its bytes change): its hash leaves the running digest. Nothing in the table form.
    func forget(_ page: Int) {
        guard !keepsTable, let arena else { return }
        let bit = UInt64(1) << (page & 63)
        guard atomic_fetch_and_u64(recorded + (page >> 6), ~bit) & bit != 0 else { return }
        loopDigest.remove(page: UInt64(page), hash: PageHash.hash(UnsafeRawBufferPointer(start: arena.ioPage(page), count: pageSize)))
    }

    /// Records the hash of `bytes`, the page now held for `page` (loop thread).
    @inline(__always) func record(_ page: Int, bytes: UnsafeRawPointer) {
        record(page, hash: PageHash.hash(UnsafeRawBufferPointer(start: bytes, count: pageSize)), into: &loopDigest)
    }

    /// Records that `page` now holds zeros (loop thread).
    @inline(__always) func recordZero(_ page: Int) {
        record(page, hash: zeroHash, into: &loopDigest)
    }

    /// `record`, on the background installer's worker, for a page it holds.
    @inline(__always) func recordOnWorker(_ page: Int, bytes: UnsafeRawPointer) {
        record(page, hash: PageHash.hash(UnsafeRawBufferPointer(start: bytes, count: pageSize)), into: &workerDigest.pointee)
    }

    @inline(__always) private func record(_ page: Int, hash: UInt128, into digest: inout ArenaDigest) {
        if keepsTable {
            hashes[page] = hash
            return
        }
        digest.add(page: UInt64(page), hash: hash)
        let bit = UInt64(1) << (page & 63)
        if atomic_fetch_or_u64(recorded + (page >> 6), bit) & bit != 0 { atomic_store_relaxed_u8(recordedAgain, 1) }
    }

    /// The hash of the copy of `page` held here, as a refresh request names it.
    func heldHash(of page: Int) -> UInt128 {
        guard !keepsTable, let arena else { return hashes[page] }
        return PageHash.hash(UnsafeRawBufferPointer(start: arena.ioPage(page), count: pageSize))
    }

    /// The digest of the whole arena as received: once every page is here (and the
    /// worker's records were collected).
    func digest() -> UInt128 {
        if keepsTable {
            var digest = ArenaDigest()
            for page in 0..<pageCount { digest.add(page: UInt64(page), hash: hashes[page]) }
            return digest.value
        }
        if atomic_load_relaxed_u8(recordedAgain) != 0, let arena {
            return ArenaDigest.of(arena: UnsafeRawBufferPointer(start: arena.ioBase, count: arena.size), pageSize: pageSize).value
        }
        var digest = loopDigest
        digest.merge(workerDigest.pointee)
        return digest.value
    }
}
