import Wire

/// The hashes of the stale copies held at a hybrid switch-over, taken off the
/// fault path: a slice of pages per loop turn while the guest already runs,
/// so that a refresh request (which names the held copy by its hash) and the
/// digest's `forget` find them ready instead of hashing 4 KiB while a guest
/// thread waits. A page asked for before its turn is hashed then. Costs 32
/// bytes a stale page, and only after a pre-copy.
///
/// Threading: the destination's loop thread only.
final class HeldCopyHashes {
    private let loop: EventLoop
    /// The stale pages, ascending.
    private let pages: [Int]
    /// `hashes[i]`: the hash of `pages[i]`'s held copy, once taken.
    private var hashes: [UInt128?]
    private var next = 0
    private var turn: NextTurn?
    private let hashPage: (Int) -> UInt128

    /// `hashPage` hashes the copy of a page held here now.
    init(loop: EventLoop, pages: [Int], hashPage: @escaping (Int) -> UInt128) {
        self.loop = loop
        self.pages = pages
        self.hashPage = hashPage
        hashes = [UInt128?](repeating: nil, count: pages.count)
    }

    /// Starts hashing, a slice per loop turn.
    func start() {
        loop.assertOnLoop()
        guard next < pages.count else { return }
        turn = NextTurn(loop: loop) { [unowned self] in step() }
        turn?.schedule()
    }

    /// The hash of `page`'s held copy, taken now if its turn has not come; nil
    /// for a page that was not stale at switch-over.
    func hash(of page: Int) -> UInt128? {
        guard let i = index(of: page) else { return nil }
        if let hash = hashes[i] { return hash }
        let hash = hashPage(page)
        hashes[i] = hash
        return hash
    }

    private func index(of page: Int) -> Int? {
        var low = 0, high = pages.count
        while low < high {
            let mid = (low + high) / 2
            if pages[mid] < page { low = mid + 1 } else { high = mid }
        }
        return low < pages.count && pages[low] == page ? low : nil
    }

    private func step() {
        let end = min(pages.count, next + Tuning.heldHashSlicePages)
        for i in next..<end where hashes[i] == nil { hashes[i] = hashPage(pages[i]) }
        next = end
        if next < pages.count { turn?.schedule() } else { close() }
    }

    func close() {
        turn?.close()
        turn = nil
    }
}
