import CUffd
import Glibc

/// `PAGEMAP_SCAN` (Linux 6.7) over one range of our own memory: the runs of
/// pages in a category, as page indices relative to the range's start. Shared
/// by the dirty tracker (`PAGE_IS_WRITTEN`) and the RWP access tracker
/// (`PAGE_IS_ACCESSED`).
///
/// Threading: one controlling thread; the region buffer is reused by every scan.
final class PagemapScanner {
    private var pagemap: Int32
    private let regions: UnsafeMutablePointer<cuffd_page_region>
    private static let regionCapacity = 1024

    /// Opens `/proc/self/pagemap`; throws `.unsupported` when it cannot.
    init(purpose: String) throws(AgentError) {
        pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { throw .unsupported("\(purpose) needs /proc/self/pagemap: \(String(cString: strerror(errno)))") }
        regions = .allocate(capacity: Self.regionCapacity)
    }

    deinit {
        close()
        regions.deallocate()
    }

    /// The runs of pages of `[base, base + length)` in `category`, ascending, as page-index ranges.
    /// `flags` are `PM_SCAN_*` flags (`PM_SCAN_WP_MATCHING` also re-protects what it reports).
    func runs(base: UnsafeMutableRawPointer, length: Int, pageSize: Int, flags: UInt64, category: UInt64) throws(AgentError) -> [Range<Int>] {
        guard pagemap >= 0 else { throw .system("PAGEMAP_SCAN after the scanner was closed") }
        var runs: [Range<Int>] = []
        let first = UInt64(UInt(bitPattern: base))
        let end = first + UInt64(length)
        var start = first
        while start < end {
            var walkEnd: UInt64 = 0
            let n = cuffd_pagemap_scan(
                pagemap, UnsafeMutableRawPointer(bitPattern: UInt(start)), UnsafeMutableRawPointer(bitPattern: UInt(end)),
                flags, regions, UInt64(Self.regionCapacity), 0, category, category, &walkEnd)
            guard n >= 0 else { throw .system("PAGEMAP_SCAN: \(String(cString: strerror(-n)))") }
            for i in 0..<Int(n) {
                let lower = Int((regions[i].start - first) / UInt64(pageSize))
                let upper = Int((regions[i].end - first) / UInt64(pageSize))
                if let last = runs.last, last.upperBound == lower {
                    runs[runs.count - 1] = last.lowerBound..<upper  // a run split by a full buffer
                } else {
                    runs.append(lower..<upper)
                }
            }
            guard walkEnd > start else { break }
            start = walkEnd
        }
        return runs
    }

    /// Closes the pagemap file. Idempotent.
    func close() {
        guard pagemap >= 0 else { return }
        Glibc.close(pagemap)
        pagemap = -1
    }
}
