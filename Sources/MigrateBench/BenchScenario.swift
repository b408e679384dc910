import MigrateAgent
import SyntheticGuest

/// One agent scenario of the benchmark: a real source process and a real
/// destination process whose guest touches the arena in one way. Named
/// `PATTERN-THREADSt-bg|nobg-BACKEND[-stale|-hybrid][@SIZE]`, e.g.
/// `random-1t-nobg-minor` or `random-4t-bg-minor@512MiB`; without `@SIZE` the
/// run's `--arena`.
/// A value type: no threading concerns.
public struct BenchScenario: Codable, Sendable, Hashable, CustomStringConvertible {
    /// What the guest's pages are when it first touches them.
    public enum Pages: String, Codable, Sendable {
        /// Never sent: every fault fetches the page (`UFFDIO_COPY`).
        case absent
        /// Pre-copied, then dirtied on the source before switch-over: the fault refreshes it
        /// (needs hybrid pre-copy, `source --precopy-rounds`).
        case stale
        /// Hybrid migration as `demo --precopy-rounds 3` runs it: three pre-copy rounds while the
        /// source's guest writes, then switch-over; the faults are on stale pages. Measures the
        /// downtime and the stale-page faults of issue 9.
        case hybrid
    }

    public var pattern: AccessPattern
    public var threads: Int
    /// Whether the source streams every page in the background (the bulk connection saturated).
    public var background: Bool
    public var backend: BackendKind
    public var pages: Pages
    /// Guest memory of this scenario; nil: the run's `--arena`. Sized scenarios also
    /// compare their whole-migration time with an idle migration of the same size.
    public var arenaBytes: Int?

    public init(pattern: AccessPattern, threads: Int, background: Bool, backend: BackendKind, pages: Pages = .absent,
                arenaBytes: Int? = nil) {
        self.pattern = pattern
        self.threads = threads
        self.background = background
        self.backend = backend
        self.pages = pages
        self.arenaBytes = arenaBytes
    }

    public var name: String {
        "\(pattern.rawValue)-\(threads)t-\(background ? "bg" : "nobg")-\(backend.rawValue)"
            + (pages == .absent ? "" : "-\(pages.rawValue)") + (arenaBytes.map { "@" + Self.sizeName($0) } ?? "")
    }

    /// `512MiB`: a size as the names write it.
    static func sizeName(_ bytes: Int) -> String { ByteSize(bytes: bytes).description.replacing(" ", with: "") }

    public var description: String { name }

    /// Parses a name; the backend may be left out (then `defaultBackend`).
    public init(parsing text: String, defaultBackend: BackendKind) throws(AgentError) {
        let usage = "expected PATTERN-THREADSt-bg|nobg[-BACKEND][-stale|-hybrid][@SIZE], like random-1t-nobg-minor "
            + "or random-4t-bg@512MiB"
        let sized = text.split(separator: "@", omittingEmptySubsequences: false)
        guard sized.count <= 2 else { throw .invalidArgument("invalid scenario '\(text)': \(usage)") }
        var arenaBytes: Int?
        if sized.count == 2 {
            let size: ByteSize
            do { size = try ByteSize(parsing: String(sized[1])) } catch {
                throw .invalidArgument("invalid scenario '\(text)': \(error)")
            }
            guard size.bytes > 0, size.bytes % Arena.systemPageSize == 0 else {
                throw .invalidArgument("invalid scenario '\(text)': the size must be a whole number of pages")
            }
            arenaBytes = size.bytes
        }
        let parts = sized[0].lowercased().split(separator: "-").map(String.init)
        guard parts.count >= 3, parts.count <= 5, let pattern = AccessPattern(rawValue: parts[0]) else {
            throw .invalidArgument("invalid scenario '\(text)': \(usage)")
        }
        guard parts[1].hasSuffix("t"), let threads = Int(parts[1].dropLast()), (1...64).contains(threads) else {
            throw .invalidArgument("invalid scenario '\(text)': thread count '\(parts[1])' must be 1t...64t")
        }
        guard parts[2] == "bg" || parts[2] == "nobg" else {
            throw .invalidArgument("invalid scenario '\(text)': '\(parts[2])' must be bg or nobg")
        }
        var rest = parts.dropFirst(3)
        var pages = Pages.absent
        if let last = rest.last, let kind = Pages(rawValue: last), kind != .absent {
            pages = kind
            rest = rest.dropLast()
        }
        var backend = defaultBackend
        if let b = rest.first {
            guard let kind = BackendKind(rawValue: b), rest.count == 1 else {
                throw .invalidArgument("invalid scenario '\(text)': unknown backend '\(b)' (rwp, minor, missing)")
            }
            backend = kind
        }
        self.init(pattern: pattern, threads: threads, background: parts[2] == "bg", backend: backend, pages: pages,
                  arenaBytes: arenaBytes)
        if let problem { throw .invalidArgument("scenario '\(text)': \(problem)") }
    }

    /// Why this combination cannot run, or nil.
    public var problem: String? {
        if pattern == .hotset && !background {
            return "a hot-set guest touches only part of the arena, so without the background stream the "
                + "migration never finishes: use it with bg"
        }
        if pages != .absent && backend == .missing {
            return "stale pages are measured on a backend that keeps the stale copy (minor or rwp), not missing"
        }
        return nil
    }

    /// The subset `scripts/bench` runs by default: every pattern, 1 and 4
    /// threads, background off and on, on `backend`; the headline scenario again
    /// on the `missing` backend; stale pages (random, no background stream);
    /// and issue 9's runs under load at `busySize`: a busy guest (random, 4
    /// threads; sequential, 1 thread) beside the background stream, and the
    /// hybrid migration (3 pre-copy rounds, 4 guest threads).
    public static func defaults(backend: BackendKind, staleAvailable: Bool) -> [BenchScenario] {
        var list: [BenchScenario] = []
        for pattern in AccessPattern.allCases {
            for threads in [1, 4] {
                for background in [false, true] where !(pattern == .hotset && !background) {
                    list.append(BenchScenario(pattern: pattern, threads: threads, background: background, backend: backend))
                }
            }
        }
        if backend != .missing {
            list.append(BenchScenario(pattern: .random, threads: 1, background: false, backend: .missing))
        }
        // Stale pages without the background stream: with it, the stream refreshes
        // nearly every stale page before the guest touches it, leaving a handful of faults.
        if staleAvailable && backend != .missing {
            for threads in [1, 4] {
                list.append(BenchScenario(pattern: .random, threads: threads, background: false, backend: backend, pages: .stale))
            }
        }
        list += busyMigrations(backend: backend, arenaBytes: busySize)
        if staleAvailable && backend != .missing { list.append(hybrid(backend: backend, arenaBytes: busySize)) }
        return list
    }

    /// The arena of issue 9's busy-guest and hybrid runs.
    public static let busySize = 512 << 20

    /// Issue 9, target 2: a busy guest beside the background stream, whose whole
    /// migration is set against an idle guest's of the same size.
    public static func busyMigrations(backend: BackendKind, arenaBytes: Int) -> [BenchScenario] {
        [busyRandom(backend: backend, arenaBytes: arenaBytes), busySequential(backend: backend, arenaBytes: arenaBytes)]
    }

    public static func busyRandom(backend: BackendKind, arenaBytes: Int?) -> BenchScenario {
        BenchScenario(pattern: .random, threads: 4, background: true, backend: backend, arenaBytes: arenaBytes)
    }

    public static func busySequential(backend: BackendKind, arenaBytes: Int?) -> BenchScenario {
        BenchScenario(pattern: .sequential, threads: 1, background: true, backend: backend, arenaBytes: arenaBytes)
    }

    /// Issue 9, target 4: the hybrid migration, 4 guest threads, the background stream on.
    public static func hybrid(backend: BackendKind, arenaBytes: Int?) -> BenchScenario {
        BenchScenario(pattern: .random, threads: 4, background: true, backend: backend, pages: .hybrid, arenaBytes: arenaBytes)
    }

    /// The same scenario on absent pages (no pre-copy): the hybrid's reference.
    public var withAbsentPages: BenchScenario {
        var s = self
        s.pages = .absent
        return s
    }

    /// Every combination on every backend the kernel offers.
    public static func all(backends: [BackendKind], staleAvailable: Bool) -> [BenchScenario] {
        var list: [BenchScenario] = []
        for backend in backends {
            for pages in staleAvailable ? [Pages.absent, .stale, .hybrid] : [.absent] {
                for pattern in AccessPattern.allCases {
                    for threads in [1, 4] {
                        for background in [false, true] {
                            let s = BenchScenario(pattern: pattern, threads: threads, background: background,
                                                  backend: backend, pages: pages)
                            if s.problem == nil { list.append(s) }
                        }
                    }
                }
            }
        }
        return list
    }

    /// The scenario the floor targets are judged on: one thread, random pages,
    /// no background stream, so every fault is a demand fault that nothing else competes with.
    public static func headline(backend: BackendKind) -> BenchScenario {
        BenchScenario(pattern: .random, threads: 1, background: false, backend: backend)
    }

    /// The same scenario with the background stream toggled.
    public var withBackgroundToggled: BenchScenario {
        var s = self
        s.background.toggle()
        return s
    }
}
