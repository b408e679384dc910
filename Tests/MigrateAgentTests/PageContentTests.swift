import MigrateAgent
import SyntheticGuest
import Testing

@Suite("PageContent")
struct PageContentTests {
    @Test("a filled page verifies", arguments: [64, 4096])
    func fillVerify(pageSize: Int) {
        let buffer = PageBuffer(pageSize: pageSize)
        for (index, version) in [(0, UInt32(0)), (1, 1), (12345, 7), (1 << 40, .max)] {
            let page = buffer.filled(page: index, version: version)
            #expect(PageContent.verify(page, index: index, version: version, pageSize: pageSize))
        }
    }

    @Test("a stale version fails")
    func staleVersion() {
        let buffer = PageBuffer(pageSize: 4096)
        let page = buffer.filled(page: 9, version: 3)
        #expect(!PageContent.verify(page, index: 9, version: 4, pageSize: 4096))
        #expect(!PageContent.verify(page, index: 9, version: 2, pageSize: 4096))
        // Right header, body of another version: still caught.
        let other = PageBuffer(pageSize: 4096)
        PageContent.fill(other.pointer, index: 9, version: 4, pageSize: 4096)
        other.pointer.storeBytes(of: page.load(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
        #expect(!PageContent.verify(other.pointer, index: 9, version: 3, pageSize: 4096))
    }

    @Test("a zero page fails, even as page 0 version 0")
    func zeroPage() {
        let zero = PageBuffer(pageSize: 4096)
        #expect(!PageContent.verify(zero.pointer, index: 0, version: 0, pageSize: 4096))
        #expect(!PageContent.verify(zero.pointer, index: 5, version: 1, pageSize: 4096))
    }

    @Test("another page's contents fail")
    func wrongIndex() {
        let buffer = PageBuffer(pageSize: 4096)
        let page = buffer.filled(page: 1, version: 1)
        #expect(!PageContent.verify(page, index: 0, version: 1, pageSize: 4096))
        #expect(!PageContent.verify(page, index: 2, version: 1, pageSize: 4096))
    }

    @Test("one flipped bit anywhere fails", arguments: [0, 8, 16, 2047, 4095])
    func flippedBit(offset: Int) {
        let buffer = PageBuffer(pageSize: 4096)
        _ = buffer.filled(page: 3, version: 2)
        let byte = buffer.pointer.load(fromByteOffset: offset, as: UInt8.self)
        buffer.pointer.storeBytes(of: byte ^ 0x10, toByteOffset: offset, as: UInt8.self)
        #expect(!PageContent.verify(buffer.pointer, index: 3, version: 2, pageSize: 4096))
    }

    @Test("describe names what the page holds")
    func describe() {
        let buffer = PageBuffer(pageSize: 4096)
        #expect(PageContent.describe(buffer.pointer, pageSize: 4096) == "an all-zero page")
        _ = buffer.filled(page: 42, version: 5)
        #expect(PageContent.describe(buffer.pointer, pageSize: 4096) == "page 42 version 5")
        buffer.pointer.storeBytes(of: UInt64(0xDEAD_BEEF), toByteOffset: 8, as: UInt64.self)
        #expect(PageContent.describe(buffer.pointer, pageSize: 4096) == "unrecognised bytes")
    }
}

/// A page-aligned, zeroed page of bytes outside any arena.
private final class PageBuffer {
    let pointer: UnsafeMutableRawPointer
    let pageSize: Int
    init(pageSize: Int) {
        self.pageSize = pageSize
        pointer = .allocate(byteCount: pageSize, alignment: pageSize)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
    }
    deinit { pointer.deallocate() }

    /// Fills the buffer with page `index` at `version` and returns it.
    func filled(page index: Int, version: UInt32) -> UnsafeRawPointer {
        PageContent.fill(pointer, index: index, version: version, pageSize: pageSize)
        return UnsafeRawPointer(pointer)
    }
}
