import Glibc

/// The guest memory a destination fills, and what resolves its faults: our
/// own arena behind a protection backend (the guest runs in this process), or
/// a VMM's regions and the userfaultfd it handed over (the guest is the VMM).
/// The fault path sees only `space` and `resolver`.
struct DestinationMemory {
    let space: any GuestPageSpace
    let resolver: any PageResolver
    /// Our own arena's backend (pre-copy, stale pages, the synthetic guest); nil for a VMM.
    let backend: (any ProtectionBackend)?
    /// The backend kind for the report (a VMM registers its regions MISSING).
    let kind: BackendKind
    /// The VMM whose memory this is (handler mode), or nil.
    let vmm: VMMPeer?
    /// How long allocating the whole arena took, before connecting (nil: not preallocated).
    var preallocateMillis: Double?

    /// A fresh arena of the configured size behind the best (or asked-for) backend.
    static func ownArena(_ configuration: DestinationConfiguration) throws(AgentError) -> DestinationMemory {
        let probe: KernelProbe
        do { probe = try KernelProbe.run() } catch { throw .kernel(error) }
        let kind = try probe.select(configuration.protection)
        _ = try ByteSize(bytes: configuration.arenaSize).pages(of: configuration.pageSize)
        let arena = try Arena(size: configuration.arenaSize, pageSize: configuration.pageSize, name: "destination-arena")
        // Only the minor backend can use memory that is there before the pages are
        // (missing needs holes to fault on; rwp protects present pages, see rwp-abi.md).
        var preallocateMillis: Double?
        if configuration.preallocate, kind == .minor {
            let start = EventLoop.nowNanos()
            switch arena.populateIOView() {
            case 0:
                preallocateMillis = Double(EventLoop.nowNanos() - start) / 1e6
            case EINVAL:  // MADV_POPULATE_WRITE is Linux 5.14+, the minor backend 5.13+
                configuration.progress("destination: warning: this kernel cannot allocate the arena ahead "
                    + "(MADV_POPULATE_WRITE needs Linux 5.14); pages are allocated as they arrive")
            case let code:
                throw .system("could not allocate the \(ByteSize(bytes: arena.size)) arena before the migration "
                    + "(madvise(MADV_POPULATE_WRITE): \(String(cString: strerror(code)))); "
                    + "free memory, or run with --no-preallocate to allocate pages as they arrive")
            }
        }
        let backend = try makeBackend(kind, arena: arena, preallocated: preallocateMillis != nil)
        return DestinationMemory(space: arena, resolver: backend, backend: backend, kind: kind, vmm: nil,
                                 preallocateMillis: preallocateMillis)
    }

    /// A VMM's memory: waits for its handover on `socketPath` (Firecracker's
    /// protocol), checks its regions, and adopts its userfaultfd.
    static func vmm(_ configuration: DestinationConfiguration, socketPath: String) throws(AgentError) -> DestinationMemory {
        configuration.progress("destination: waiting for a VMM on \(socketPath)")
        let handover = try UffdHandoverReceiver.receive(
            socketPath: socketPath, acceptTimeoutSeconds: configuration.vmmHandoverTimeoutSeconds,
            messageTimeoutSeconds: Tuning.vmmMessageSeconds)
        let total = handover.regions.reduce(UInt64(0)) { $0 + $1.size }
        do {
            try UffdHandoverReceiver.validate(handover.regions, imageBytes: total)
        } catch {
            close(handover.uffd)
            throw error
        }
        let regions = VMMRegions(handover.regions)
        configuration.progress("destination: VMM pid \(handover.peerPID) handed over \(handover.regions.count) regions, "
            + "\(ByteSize(bytes: Int(total))) in \(regions.pageSize)-byte pages")
        let resolver = VMMResolver(uffd: Userfaultfd(adopting: handover.uffd), regions: regions)
        return DestinationMemory(space: regions, resolver: resolver, backend: nil, kind: .missing,
                                 vmm: VMMPeer(pid: handover.peerPID, connection: handover.connection,
                                              regionCount: handover.regions.count))
    }

    /// Our arena, where pre-copy pages land and the synthetic guest runs (nil for a VMM).
    var arena: Arena? { backend?.arena }

    var bytes: Int { space.pageCount * space.pageSize }
}

/// The VMM process that handed over its memory (handler mode).
struct VMMPeer {
    /// From `SO_PEERCRED`.
    let pid: Int32
    /// The Unix socket it keeps open; its end (EOF) means the VMM is gone.
    let connection: Int32
    let regionCount: Int

    /// Whether the process still exists.
    var isAlive: Bool { kill(pid, 0) == 0 || errno != ESRCH }
}
