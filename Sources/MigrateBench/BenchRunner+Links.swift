import Dispatch
import FoundationEssentials
import Glibc
import Histogram
import MigrateAgent

/// Issue 9's real links: for each rate, two network namespaces joined by a
/// veth pair shaped with `tc ... tbf` (`LinkHosts`), and on that link, in
/// turn: the round trip of the floor while the link is idle, bulk transfers,
/// the background-stream scenario (`random-1t-bg`) and an idle guest's whole
/// migration, each agent started with `ip netns exec`. The namespaces are
/// removed after each link, on a failure, and on SIGINT or SIGTERM.
/// Threading: the controlling thread.
extension BenchRunner {
    /// The scenario judged on a link: one guest thread, random pages, the background stream saturating the link.
    static func linkScenario(backend: BackendKind) -> BenchScenario {
        BenchScenario.headline(backend: backend).withBackgroundToggled
    }

    func measureLinks(backend: BackendKind, baselines: Baselines) throws(AgentError) -> [LinkResult] {
        var results: [LinkResult] = []
        let progress = configuration.progress
        if let reason = LinkHosts.unavailableReason() {
            for rate in configuration.links {
                progress("bench: link \(rate.name) skipped: \(reason)")
                results.append(LinkResult(name: rate.name, rateBitsPerSecond: rate.bitsPerSecond,
                                          shaping: rate.tcArguments.joined(separator: " "), skipped: reason))
            }
            return results
        }
        let stale = LinkHosts.sweepStale()
        if !stale.isEmpty {
            progress("bench: removed network namespaces left by a benchmark that was killed: \(stale.joined(separator: ", "))")
        }
        let cleanup = LinkCleanup(progress: progress)
        defer { cleanup.close() }
        for rate in configuration.links {
            progress("bench: link \(rate.name): creating network namespaces \(LinkHosts.prefix)src-\(getpid()) and "
                + "\(LinkHosts.prefix)dst-\(getpid()), joined by a veth pair shaped on both ends with "
                + "`tc qdisc add dev VETH \(rate.tcArguments.joined(separator: " "))`; the source runs in the first, the "
                + "destination in the second (they are removed after this link, also on a failure or an interrupt)")
            let hosts: LinkHosts
            do { hosts = try LinkHosts(rate: rate) } catch {
                progress("bench: link \(rate.name) skipped: \(error)")
                results.append(LinkResult(name: rate.name, rateBitsPerSecond: rate.bitsPerSecond,
                                          shaping: rate.tcArguments.joined(separator: " "),
                                          skipped: "the link could not be made: \(error)"))
                continue
            }
            cleanup.current = hosts
            defer {
                hosts.remove()
                cleanup.current = nil
                progress("bench: link \(rate.name): removed the network namespaces \(hosts.source) and \(hosts.destination)")
            }
            results.append(try measure(link: hosts, backend: backend, baselines: baselines))
        }
        return results
    }

    private func measure(link: LinkHosts, backend: BackendKind, baselines: Baselines) throws(AgentError) -> LinkResult {
        let rate = link.rate
        let progress = configuration.progress
        var result = LinkResult(name: rate.name, rateBitsPerSecond: rate.bitsPerSecond, shaping: link.shaping)
        result.pacingPercent = configuration.linkPacingPercent
        // The floor on this link: this run's raw userfaultfd resolution, plus a round trip
        // across the shaped veth while it is idle, at the placement of the run's floor.
        let placement = baselines.floor?.placement ?? .unpinned
        guard let uffd = baselines.userfaultfd("uffd-missing", placement) else {
            throw .system("no uffd-missing baseline at the floor's placement (\(placement.rawValue))")
        }
        let server = try LoopbackBaselines(executable: configuration.executable, logDirectory: workDirectory,
                                           cores: ProcessInfo.processInfo.activeProcessorCount, link: link)
        defer { server.close() }
        progress("bench: link \(rate.name): round trip (16 B → 4 KiB) across the idle link, \(placement.rawValue)")
        let rtt = try server.roundTrips(samples: configuration.baselineSamples, placement: placement, id: "link-\(rate.name)-rtt")
        distributions.append(("baseline-link-\(rate.name)-rtt", rtt.histogram))
        result.roundTrip = rtt.baseline
        let floor = FaultFloor(placement: placement, uffd: uffd.latency, rtt: rtt.baseline.latency)
        result.floor = floor
        // About a second of the link per transfer, at most --bandwidth.
        let bytes = max(16 << 20, min(configuration.bandwidthBytes, (Int(rate.bytesPerSecond) >> 20) << 20))
        progress("bench: link \(rate.name): floor " + String(format: "p50 %.1f µs, p99 %.1f µs", floor.p50, floor.p99)
            + "; bulk transfers (\(configuration.bandwidthTransfers) × \(ByteSize(bytes: bytes)))")
        let bandwidth = try server.bandwidth(bytes: bytes, transfers: configuration.bandwidthTransfers)
        result.bandwidth = bandwidth
        progress("bench: link \(rate.name): bulk " + String(format: "%.0f MB/s best (the link's rate: %.0f MB/s)",
                                                            bandwidth.best / 1e6, rate.bytesPerSecond / 1e6))

        result.scenarios = try runScenarios([Self.linkScenario(backend: backend)], floor: floor, link: link)
        let migration = try runMigration(size: configuration.arenaSize, backend: backend, bandwidth: bandwidth.best,
                                         install: nil, link: link)
        result.migration = migration
        result.migrationFractionOfLink = (Double(migration.arenaBytes) / migration.seconds / rate.bytesPerSecond).rounded(toPlaces: 3)
        return result
    }
}

extension BenchRunner {
    /// Why real links cannot be measured on this machine (not root, no `ip` or `tc`), or nil.
    public static func linkUnavailableReason() -> String? { LinkHosts.unavailableReason() }
}
