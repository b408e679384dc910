import CGuestAccess

/// The truth about which pages a guest touched: one flag byte per page, set by
/// guest threads after each access (a relaxed atomic store, skipped when the
/// flag is already set) and swapped back to zero by the controller.
///
/// Threading: any number of guest threads `mark`; one controlling thread `take`s.
final class TouchedPages: @unchecked Sendable {
    let pageCount: Int
    private let flags: UnsafeMutablePointer<UInt8>

    init(pageCount: Int) {
        self.pageCount = pageCount
        flags = .allocate(capacity: pageCount)
        flags.initialize(repeating: 0, count: pageCount)
    }

    deinit { flags.deallocate() }

    @inline(__always) func mark(_ page: Int) { atomic_mark_u8(flags + page) }

    /// The pages marked since the previous call, ascending, and clears them. A mark made
    /// while this runs shows now or in the next call, never in neither.
    func take() -> [Int] {
        var pages: [Int] = []
        for page in 0..<pageCount where atomic_load_relaxed_u8(flags + page) != 0 {
            if atomic_exchange_u8(flags + page, 0) != 0 { pages.append(page) }
        }
        return pages
    }
}
