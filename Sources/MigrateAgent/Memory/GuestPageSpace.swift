/// Where the guest's pages are, as the fault path sees them: page indices (the
/// source's image order) to guest addresses in the address space the
/// userfaultfd belongs to, and back. Our own `Arena` is one contiguous range; a
/// VMM's regions can have holes between them (`VMMRegions`).
///
/// Threading: immutable; any thread.
public protocol GuestPageSpace: AnyObject, Sendable {
    var pageSize: Int { get }
    var pageCount: Int { get }
    /// The guest address of page `index`.
    func guestPage(_ index: Int) -> UnsafeMutableRawPointer
    /// The page holding a guest address, or nil when outside guest memory.
    func pageIndex(ofGuestAddress address: UInt64) -> Int?
    /// How many pages from `first` (at most `limit`) are consecutive in the guest's
    /// address space, so that one ioctl can cover them.
    func contiguousPages(from first: Int, limit: Int) -> Int
}

extension Arena: GuestPageSpace {
    @inline(__always) public func contiguousPages(from first: Int, limit: Int) -> Int { limit }
}
