/// Learns which pages of the source arena's guest view the guest touches,
/// reads and writes alike, while it runs (the working set, for hot-first
/// migration). Write-protect dirty tracking sees only writes; this sees both.
///
/// Threading: one controlling thread (the source's loop) creates the tracker
/// and calls `scan`, `costs` and `stop`; guest threads only touch memory. A
/// tracker may run a thread of its own (the minor-fault sampler's handler),
/// which never touches guest memory.
///
/// The guest view must not be registered with another userfaultfd meanwhile:
/// a range belongs to one descriptor (`EBUSY`), and RWP and WP share the PTE
/// bit, so access tracking and write-protect dirty tracking exclude each other.
public protocol AccessTracking: AnyObject {
    var method: AccessTrackingMethod { get }
    /// The pages accessed since the previous scan (or since the tracker was made),
    /// ascending. They are protected again before this returns, so an access
    /// between two scans is never lost (it shows in this scan or the next).
    func scan() throws(AgentError) -> [Int]
    /// What tracking has cost so far.
    var costs: AccessTrackingCosts { get }
    /// Stops tracking: the guest view is unregistered, so the guest runs
    /// unprotected, and any guest thread blocked on the tracker is released.
    /// Idempotent; `scan` throws afterwards.
    func stop()
}

/// What tracking cost the guest and the agent.
public struct AccessTrackingCosts: Codable, Sendable, Equatable {
    /// Scans done.
    public var scans = 0
    /// Pages watched per interval: the whole arena for RWP, the sample for the emulation.
    public var pagesSampledPerInterval = 0
    /// Guest faults the tracker resolved (the emulation: each one blocked a guest thread).
    /// RWP async faults are handled inside the kernel without a message and are not counted.
    public var faults = 0
    /// Nanoseconds guest threads spent blocked on the tracker, when the tracker can know it
    /// (nil: unknown; the emulation knows only its own handling time, below).
    public var guestBlockedNanos: UInt64?
    /// Nanoseconds the tracker's own thread spent resolving faults (read to resolve).
    public var handlerNanos: UInt64 = 0
    /// Nanoseconds the controlling thread spent in `scan` (scanning, re-protecting).
    public var scanNanos: UInt64 = 0

    public init() {}
}

/// How accessed pages are found.
public enum AccessTrackingMethod: String, Codable, Sendable, CaseIterable {
    /// Userfaultfd read-write protection in async mode, read with `PAGEMAP_SCAN`/`PAGE_IS_ACCESSED` (Linux 7.3).
    case rwpAsync = "rwp-async"
    /// The emulation: a rotating sample of guest-view pages is dropped and their MINOR faults are taken (Linux 5.13+).
    case minorSampling = "minor-sampling"

    /// The best method the kernel offers, or the one asked for; an error names what is missing.
    public static func select(requested: AccessTrackingMethod?, probe: KernelProbe) throws(AgentError) -> AccessTrackingMethod {
        let available = allCases.filter { $0.isAvailable(on: probe) }
        if let requested {
            guard available.contains(requested) else {
                throw .unsupported("access tracking '\(requested.rawValue)' needs \(requested.requirement), which kernel "
                    + "\(probe.kernelRelease) lacks"
                    + (available.isEmpty ? "" : " (available: \(available.map(\.rawValue).joined(separator: ", ")))"))
            }
            return requested
        }
        guard let best = available.first else {
            throw .unsupported("access tracking needs \(rwpAsync.requirement), or at least \(minorSampling.requirement); "
                + "kernel \(probe.kernelRelease) has neither")
        }
        return best
    }

    /// Whether the probed kernel can run this method.
    public func isAvailable(on probe: KernelProbe) -> Bool {
        let features = UffdFeatures(rawValue: probe.featureBits)
        switch self {
        case .rwpAsync: return features.isSuperset(of: [.rwp, .rwpAsync]) && probe.pagemapScan
        case .minorSampling: return probe.shmemMinor
        }
    }

    /// What the kernel must offer, for messages.
    public var requirement: String {
        switch self {
        case .rwpAsync: "userfaultfd RWP and RWP_ASYNC (UFFD_FEATURE_RWP, UFFD_FEATURE_RWP_ASYNC) and PAGEMAP_SCAN, Linux 7.3 or later"
        case .minorSampling: "shmem minor faults (UFFD_FEATURE_MINOR_SHMEM), Linux 5.13 or later"
        }
    }

    /// Creates the tracker over `arena`'s guest view, which must be fully populated
    /// (every page in the memfd) and registered with no other userfaultfd.
    /// `samplePercent` (1...100) is the emulation's sample per interval; RWP always watches every page.
    public func makeTracker(arena: Arena, samplePercent: Int = 100) throws(AgentError) -> any AccessTracking {
        switch self {
        case .rwpAsync: try RWPAccessTracker(arena: arena)
        case .minorSampling: try MinorFaultSampler(arena: arena, samplePercent: samplePercent)
        }
    }
}
