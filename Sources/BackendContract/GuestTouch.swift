import CGuestAccess
import MigrateAgent
import SyntheticGuest

/// How a guest thread touches a page first.
enum AccessKind: String, Sendable {
    case read, write
}

/// What a page must hold when the guest looks at it.
enum ExpectedContent: Sendable, CustomStringConvertible {
    /// `PageContent` of the page at this version.
    case version(UInt32)
    /// Nothing ever installed (or contents dropped): all zero bytes.
    case zeros

    var description: String {
        switch self {
        case .version(let v): "version \(v)"
        case .zeros: "an all-zero page"
        }
    }
}

/// One access of a self-test guest thread: touch `page` of the guest view the
/// way a vCPU would, then check every byte of it.
struct GuestTouch: Sendable {
    let page: Int
    let access: AccessKind
    let expected: ExpectedContent

    /// Performs the access and returns what was wrong, or nil.
    ///
    /// The first access goes through a volatile C load or store, so the
    /// optimiser can neither drop it nor turn a write into a read: the fault
    /// the kernel reports has the access type the plan says. A write stores
    /// the value word 0 already must hold (the page index, or zero), so the
    /// page still verifies afterwards.
    func perform(on arena: Arena) -> String? {
        let address = arena.guestPage(page)
        switch (access, expected) {
        case (.read, _): _ = guest_read_u64(address)
        case (.write, .version): guest_write_u64(address, UInt64(page))
        case (.write, .zeros): guest_write_u64(address, 0)
        }
        if Self.holds(address, page: page, expected, pageSize: arena.pageSize) { return nil }
        return "\(access) of page \(page): expected \(expected), found "
            + PageContent.describe(address, pageSize: arena.pageSize)
    }

    /// Only the first access, without checking the page (for timing).
    func touchOnly(_ arena: Arena) -> UInt64 {
        let address = arena.guestPage(page)
        switch access {
        case .read: return guest_read_u64(address)
        case .write:
            guest_write_u64(address, UInt64(page))
            return 0
        }
    }

    /// Whether the page at `address` (page `page`) holds `expected`.
    static func holds(_ address: UnsafeRawPointer, page: Int, _ expected: ExpectedContent, pageSize: Int) -> Bool {
        switch expected {
        case .version(let version):
            return PageContent.verify(address, index: page, version: version, pageSize: pageSize)
        case .zeros:
            let words = address.assumingMemoryBound(to: UInt64.self)
            var bits: UInt64 = 0
            for i in 0..<(pageSize / 8) { bits |= words[i] }
            return bits == 0
        }
    }
}

extension Arena {
    /// What is wrong with page `page` as the agent's io view shows it, or nil.
    /// The io view is not registered with userfaultfd: reading it never faults.
    func ioViewProblem(page: Int, expected: ExpectedContent) -> String? {
        if GuestTouch.holds(ioPage(page), page: page, expected, pageSize: pageSize) { return nil }
        return "io view of page \(page): expected \(expected), found " + PageContent.describe(ioPage(page), pageSize: pageSize)
    }

    /// Writes page `page` at `version` through the io view (pre-copy: the guest view is not touched).
    func fillThroughIOView(page: Int, version: UInt32) {
        PageContent.fill(ioPage(page), index: page, version: version, pageSize: pageSize)
    }
}

/// A page-aligned buffer holding one page's new contents: the source of
/// `installAbsent` and `refresh`. Never guest memory.
final class FreshPage {
    private let buffer: UnsafeMutableRawPointer
    private let pageSize: Int

    init(pageSize: Int) {
        self.pageSize = pageSize
        buffer = .allocate(byteCount: pageSize, alignment: pageSize)
    }

    deinit { buffer.deallocate() }

    /// The contents of page `index` at `version`, valid until the next call.
    func contents(of index: Int, version: UInt32) -> UnsafeRawPointer {
        PageContent.fill(buffer, index: index, version: version, pageSize: pageSize)
        return UnsafeRawPointer(buffer)
    }
}
