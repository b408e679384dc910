import CGuestAccess
import Wire

/// What the destination knows of the pages it received: the input of the
/// end-to-end digest compared with the source's, and, where a held copy may be
/// named or replaced later, each page's 128-bit hash.
///
/// Two forms. A *table* of every page's hash when a copy can be replaced: a
/// VMM's memory (a removed page turns to zeros) and pre-copy (a stale copy is
/// named by its hash in a refresh request, so the source can answer
/// "unchanged"). Otherwise (post-copy into our own arena, where each page
/// arrives once) a *running digest*: each page's hash is added as it is
/// recorded and not kept, so the agent keeps a bit a page instead of 16 bytes.
/// A page recorded twice there (never expected) cannot take its first hash
/// back: the digest is then computed from the arena itself at the end.
/// Post-copy starts running; the first pre-copy page switches to the table,
/// before any page was recorded otherwise.
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
    private(set) var keepsTable: Bool
    /// Running form: the digest of the pages the loop recorded, and of those the worker recorded.
    private var loopDigest = ArenaDigest()
    private let workerDigest: UnsafeMutablePointer<ArenaDigest>
    /// Running form: a bit per page recorded (set by either thread, atomically), to catch a second record.
    private let recorded: UnsafeMutablePointer<UInt64>
    private let recordedAgain: UnsafeMutablePointer<UInt8>
    /// Where the pages are, to hash them all if the running digest cannot be trusted.
    private let arena: Arena?
    /// The hash of an all-zero page, for pages that arrive as `zeroPages` runs.
    private let zeroHash: UInt128

    /// `keepsTable`: from the start (a VMM's memory); else running until `keepTable()`.
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

    /// Pre-copy begins: keep every page's hash from now on. Before any page was recorded.
    func keepTable() {
        precondition(keepsTable || (loopDigest.value == 0 && workerDigest.pointee.value == 0),
                     "the table must be kept from the first page")
        keepsTable = true
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

    /// The 16 bytes of `page`'s hash, as a request frame carries them; nil without a table.
    @inline(__always) func bytes(of page: Int) -> UnsafeRawBufferPointer? {
        keepsTable ? UnsafeRawBufferPointer(start: hashes + page, count: MemoryLayout<UInt128>.size) : nil
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
