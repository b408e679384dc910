/// One guest memory region of a VMM, as Firecracker describes it in its
/// userfaultfd handshake (`GuestRegionUffdMapping`): the VMM mapped `size` bytes
/// at `baseHostVirtAddr`, and their contents are the bytes at `offset` of the
/// memory image (the source's file).
public struct GuestRegion: Equatable, Sendable {
    public var baseHostVirtAddr: UInt64
    public var size: UInt64
    /// Offset of the region in the memory image (the source's file).
    public var offset: UInt64
    public var pageSize: Int

    public init(baseHostVirtAddr: UInt64, size: UInt64, offset: UInt64, pageSize: Int) {
        self.baseHostVirtAddr = baseHostVirtAddr
        self.size = size
        self.offset = offset
        self.pageSize = pageSize
    }

    /// The first address past the region (wraps only for a region `validate` refuses).
    public var endHostVirtAddr: UInt64 { baseHostVirtAddr &+ size }

    /// Whether `address` lies inside the region.
    public func contains(_ address: UInt64) -> Bool {
        address >= baseHostVirtAddr && address - baseHostVirtAddr < size
    }

    /// The image offset of `address` (which must lie inside the region).
    public func imageOffset(of address: UInt64) -> UInt64 {
        offset + (address - baseHostVirtAddr)
    }

    /// "region 1 at 0x7f…": how errors name a region.
    func name(index: Int) -> String {
        "region \(index) at 0x\(String(baseHostVirtAddr, radix: 16))"
    }
}
