import CGuestAccess
import CUffd
import Foundation
import Glibc

/// The guest: what a VM would do to memory restored lazily from the image, checking every byte it
/// sees against the image. Pages are numbered across the regions in image order. Every 16th page
/// (number % 16 == 5) is a *write page*: one guest thread owns it, writes a 16-byte marker into its
/// middle (a write fault when the page is absent) and reads the whole page back; the other threads
/// skip it. Every other page is read and compared by every thread, each in its own random order.
/// Threading: the guest threads share only `firstError`, under `lock`.
final class Guest: @unchecked Sendable {
    let memory: GuestMemory
    let image: UnsafeRawPointer
    let pageSize: Int
    let pageCount: Int
    private let lock = NSLock()
    private var firstError: String?

    init(memory: GuestMemory, image: UnsafeRawPointer, imageBytes: Int) {
        self.memory = memory
        self.image = image
        self.pageSize = memory.pageSize
        self.pageCount = imageBytes / memory.pageSize
    }

    var error: String? { lock.withLock { firstError } }

    /// Keeps the first problem; later ones are consequences or repeats.
    func report(_ problem: String) { lock.withLock { if firstError == nil { firstError = problem } } }

    struct Page {
        let region: Int
        let regionOffset: Int
        let imageOffset: Int
        let address: UnsafeMutableRawPointer
    }

    func page(_ number: Int) -> Page {
        let imageOffset = number * pageSize
        for (index, region) in memory.regions.enumerated() where imageOffset < region.offset + region.size {
            let regionOffset = imageOffset - region.offset
            return Page(region: index, regionOffset: regionOffset, imageOffset: imageOffset, address: region.base + regionOffset)
        }
        preconditionFailure("page \(number) is outside the image")
    }

    static func isWritePage(_ number: Int) -> Bool { number % 16 == 5 }

    // MARK: - Checks

    /// nil when `range` of the page equals the image, else what differs.
    func compare(_ page: Page, _ range: Range<Int>) -> String? {
        let found = UnsafeRawPointer(page.address) + range.lowerBound
        let expected = image + page.imageOffset + range.lowerBound
        if memcmp(found, expected, range.count) == 0 { return nil }
        var byte = 0
        while found.load(fromByteOffset: byte, as: UInt8.self) == expected.load(fromByteOffset: byte, as: UInt8.self) { byte += 1 }
        return describe(page, at: range.lowerBound + byte, expected: expected - range.lowerBound)
    }

    /// "region 0, offset 0x5000 (image offset 0x5000): at byte 0x10 expected 0x…, found 0x… (the page reads all zeros)".
    func describe(_ page: Page, at byte: Int, expected: UnsafeRawPointer?) -> String {
        let word = byte & ~7
        let found = UnsafeRawPointer(page.address).loadUnaligned(fromByteOffset: word, as: UInt64.self)
        let wanted = expected.map { $0.loadUnaligned(fromByteOffset: word, as: UInt64.self) } ?? 0
        var text = "region \(page.region), offset \(hex(page.regionOffset)) (image offset \(hex(page.imageOffset))): "
        text += "at byte \(hex(byte)) expected \(hex64(wanted)), found \(hex64(found))"
        if isZero(UnsafeRawPointer(page.address), pageSize) { text += " (the page reads all zeros)" }
        return text
    }

    // MARK: - The guest's phases

    /// A `read(2)` from a file into an absent page and a `write(2)` from another absent page: the
    /// kernel touches guest memory on the guest's behalf, and its fault must be resolved like a
    /// guest's. Must run before the guest threads, while both pages are absent.
    func kernelAccess() {
        let file = cuffd_memfd_create("stand-in-vmm", CUFFD_MFD_CLOEXEC)
        guard file >= 0 else { return report("memfd_create: \(String(cString: strerror(-file)))") }
        defer { close(file) }
        // read(2): 64 of the image's own bytes into the middle of the last page; the rest of the
        // page is what the handler installed, and the whole page must equal the image.
        let target = page(pageCount - 1)
        let chunk = 64, at = 128
        guard pwrite(file, image + target.imageOffset + at, chunk, 0) == chunk else { return report("pwrite to a memfd: \(errnoText())") }
        let read = pread(file, target.address + at, chunk, 0)
        guard read == chunk else {
            return report("read(2) into absent guest memory (region \(target.region), offset \(hex(target.regionOffset))) returned \(read): \(errnoText())")
        }
        if let problem = compare(target, 0..<pageSize) { return report("after read(2) into the page: " + problem) }
        // write(2): a whole absent page out to the file; what the kernel read must be the image.
        guard pageCount > 1 else { return }
        let source = page(pageCount / 2 == pageCount - 1 ? 0 : pageCount / 2)
        let written = pwrite(file, source.address, pageSize, off_t(pageSize))
        guard written == pageSize else {
            return report("write(2) from absent guest memory (region \(source.region), offset \(hex(source.regionOffset))) returned \(written): \(errnoText())")
        }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 64)
        defer { copy.deallocate() }
        guard pread(file, copy, pageSize, off_t(pageSize)) == pageSize else { return report("pread from a memfd: \(errnoText())") }
        if memcmp(copy, image + source.imageOffset, pageSize) != 0 {
            let snapshot = Page(region: source.region, regionOffset: source.regionOffset, imageOffset: source.imageOffset, address: copy)
            var byte = 0
            while copy.load(fromByteOffset: byte, as: UInt8.self) == image.load(fromByteOffset: source.imageOffset + byte, as: UInt8.self) { byte += 1 }
            report("what write(2) read from the page: " + describe(snapshot, at: byte, expected: image + source.imageOffset))
        }
    }

    /// One guest thread: every read page in a random order, and its own write pages.
    func run(thread: Int, of threads: Int) {
        var generator = SplitMix64(seed: UInt64(thread) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(getpid()))
        let order = (0..<pageCount).filter { !Self.isWritePage($0) || ($0 / 16) % threads == thread }.shuffled(using: &generator)
        let middle = pageSize / 2
        for number in order {
            if error != nil { return }
            let current = page(number)
            guard Self.isWritePage(number) else {
                if let problem = compare(current, 0..<pageSize) { report(problem) }
                continue
            }
            let marker = 0x5354_414E_4449_4E00 ^ UInt64(number)  // "STANDIN\0" ^ page
            guest_write_u64(current.address + middle, marker)
            guest_write_u64(current.address + middle + 8, UInt64(thread))
            if guest_read_u64(current.address + middle) != marker || guest_read_u64(current.address + middle + 8) != UInt64(thread) {
                report("region \(current.region), offset \(hex(current.regionOffset)): the guest's write did not read back")
            } else if let problem = compare(current, 0..<middle) ?? compare(current, (middle + 16)..<pageSize) {
                report("after a guest write to the page: " + problem)
            }
        }
    }

    /// Balloon inflation: `MADV_DONTNEED` on `pages` pages in the middle of the last region (the
    /// kernel sends UFFD_EVENT_REMOVE and waits until the handler read it); the pages must then read
    /// zeros, and the pages around the range keep their contents. With `atResidentPercent`, the
    /// range is given back once that share of it is resident (polled with `mincore`, which does not
    /// fault; the watchdog bounds the wait): the removal then meets pages the handler is installing.
    func balloon(pages: Int, atResidentPercent: Int = 0) {
        let last = memory.regions.count - 1
        let region = memory.regions[last]
        let regionPages = region.size / pageSize
        let first = (regionPages - pages) / 2
        let start = region.offset / pageSize + first
        if atResidentPercent > 0 {
            var vector = [UInt8](repeating: 0, count: pages * pageSize / Int(getpagesize()))
            while true {
                guard mincore(region.base + first * pageSize, pages * pageSize, &vector) == 0 else {
                    return report("mincore of the balloon's \(pages) pages: \(errnoText())")
                }
                if vector.reduce(0, { $0 + Int($1 & 1) }) * 100 >= vector.count * atResidentPercent { break }
                sched_yield()
            }
        }
        guard madvise(region.base + first * pageSize, pages * pageSize, MADV_DONTNEED) == 0 else {
            return report("madvise(MADV_DONTNEED) of \(pages) pages in region \(last): \(errnoText())")
        }
        for number in start..<(start + pages) {
            let current = page(number)
            if !isZero(UnsafeRawPointer(current.address), pageSize) {
                return report("after the balloon's MADV_DONTNEED: " + describe(current, at: firstNonZero(current.address), expected: nil)
                              + "; a removed page must read zeros")
            }
        }
        for number in [start - 1, start + pages] where number >= region.offset / pageSize && number < pageCount && !Self.isWritePage(number) {
            if let problem = compare(page(number), 0..<pageSize) { return report("next to the balloon's range: " + problem) }
        }
    }

    private func firstNonZero(_ address: UnsafeRawPointer) -> Int {
        var byte = 0
        while byte < pageSize && address.load(fromByteOffset: byte, as: UInt8.self) == 0 { byte += 1 }
        return byte
    }
}

func isZero(_ address: UnsafeRawPointer, _ count: Int) -> Bool {
    var offset = 0
    while offset + 8 <= count {
        if address.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != 0 { return false }
        offset += 8
    }
    return true
}

func hex(_ value: Int) -> String { "0x" + String(value, radix: 16) }
func hex64(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
}

/// A small seeded generator: each guest thread its own order.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
