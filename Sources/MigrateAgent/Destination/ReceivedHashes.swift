import CGuestAccess
import Wire

/// What the destination knows of the pages it received: the end-to-end digest
/// compared with the source's, kept as a running sum, and a bit a page saying
/// whether that page's hash is in it. The agent keeps no per-page hash: each
/// page's 128-bit hash is added as it is recorded.
///
/// A page whose hash is in the digest is recorded again only when the same
/// bytes arrive again (after switch-over the source's memory no longer
/// changes: a demand answer and the stream's copy, or a page the guest gave
/// back): that record is skipped. A copy that is about to be replaced by other
/// bytes (a page pre-copy sends again, a stale page refreshed) is `forget`-ten
/// first, while its bytes are still in our arena: their hash leaves the digest.
/// A refresh request names the held copy by its hash (`heldHash`, taken ahead
/// by `HeldCopyHashes` after switch-over); a backend that drops stale copies
/// (`missing`) forgets them at switch-over,
/// before it drops them. A VMM's memory has no pre-copy and no stale pages, so
/// it never needs either (and has no arena of ours to hash from).
///
/// Threading: the destination's loop thread, except the pages a `BackgroundInstaller`
/// holds (`.arriving`): its worker records those (`recordOnWorker`, into a
/// running sum of its own), and publishes them with the release store of its
/// done index, which the loop loads with acquire before it collects them. No
/// page is recorded by both (the bit is set atomically all the same). Allocated
/// once; nothing per page.
final class ReceivedHashes {
    let pageCount: Int
    let pageSize: Int
    /// The digest of the pages the loop recorded, and of those the worker recorded.
    private var loopDigest = ArenaDigest()
    private let workerDigest: UnsafeMutablePointer<ArenaDigest>
    /// A bit per page whose hash is in the digest.
    private let recorded: UnsafeMutablePointer<UInt64>
    /// Our own arena, where a held copy is hashed from (nil: a VMM's memory).
    private let arena: Arena?
    /// The stale copies' hashes, taken ahead after a hybrid switch-over (nil: none, or not yet).
    var held: HeldCopyHashes?
    /// The hash of an all-zero page, for pages that arrive as `zeroPages` runs.
    private let zeroHash: UInt128

    init(pageCount: Int, pageSize: Int, arena: Arena?) {
        self.pageCount = pageCount
        self.pageSize = pageSize
        self.arena = arena
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        zeroHash = PageHash.hash(UnsafeRawBufferPointer(zeros))
        zeros.deallocate()
        recorded = ZeroedArray.allocate(UInt64.self, count: (pageCount + 63) / 64)
        workerDigest = .allocate(capacity: 1)
        workerDigest.initialize(to: ArenaDigest())
    }

    deinit {
        ZeroedArray.free(recorded)
        workerDigest.deallocate()
    }

    /// Records `bytes`, the page now held for `page` (loop thread).
    @inline(__always) func record(_ page: Int, bytes: UnsafeRawPointer) {
        guard mark(page) else { return }
        loopDigest.add(page: UInt64(page), hash: hash(bytes))
    }

    /// Records that `page` now holds zeros (loop thread).
    @inline(__always) func recordZero(_ page: Int) {
        guard mark(page) else { return }
        loopDigest.add(page: UInt64(page), hash: zeroHash)
    }

    /// `record`, on the background installer's worker, for a page it holds.
    @inline(__always) func recordOnWorker(_ page: Int, bytes: UnsafeRawPointer) {
        guard mark(page) else { return }
        workerDigest.pointee.add(page: UInt64(page), hash: hash(bytes))
    }

    /// The copy of `page` held in our arena is about to be replaced by other bytes
    /// (loop thread, before they change): its hash leaves the digest.
    func forget(_ page: Int) {
        let bit = UInt64(1) << (page & 63)
        guard atomic_fetch_and_u64(recorded + (page >> 6), ~bit) & bit != 0 else { return }
        loopDigest.remove(page: UInt64(page), hash: heldHash(of: page))
    }

    /// The hash of the copy of `page` held in our arena, as a refresh request names it.
    func heldHash(of page: Int) -> UInt128 {
        held?.hash(of: page) ?? hashOfHeldCopy(page)
    }

    /// The hash of the copy of `page` held in our arena now (`HeldCopyHashes` takes them ahead).
    func hashOfHeldCopy(_ page: Int) -> UInt128 {
        guard let arena else { preconditionFailure("only our own arena holds stale copies") }
        return hash(arena.ioPage(page))
    }

    /// The digest of the whole arena as received: once every page is here (and the
    /// worker's records were collected).
    func digest() -> UInt128 {
        var digest = loopDigest
        digest.merge(workerDigest.pointee)
        return digest.value
    }

    /// Sets `page`'s bit; false when it was set (the same bytes again).
    @inline(__always) private func mark(_ page: Int) -> Bool {
        let bit = UInt64(1) << (page & 63)
        return atomic_fetch_or_u64(recorded + (page >> 6), bit) & bit == 0
    }

    @inline(__always) private func hash(_ bytes: UnsafeRawPointer) -> UInt128 {
        PageHash.hash(UnsafeRawBufferPointer(start: bytes, count: pageSize))
    }
}
