import MigrateAgent
import SyntheticGuest

/// One agent scenario of the benchmark: a real source process and a real
/// destination process whose guest touches the arena in one way. Named
/// `PATTERN-THREADSt-bg|nobg-BACKEND[-stale]`, e.g. `random-1t-nobg-minor`.
/// A value type: no threading concerns.
public struct BenchScenario: Codable, Sendable, Hashable, CustomStringConvertible {
    /// What the guest's pages are when it first touches them.
    public enum Pages: String, Codable, Sendable {
        /// Never sent: every fault fetches the page (`UFFDIO_COPY`).
        case absent
        /// Pre-copied, then dirtied on the source before switch-over: the fault refreshes it
        /// (needs hybrid pre-copy, `source --precopy-rounds`).
        case stale
    }

    public var pattern: AccessPattern
    public var threads: Int
    /// Whether the source streams every page in the background (the bulk connection saturated).
    public var background: Bool
    public var backend: BackendKind
    public var pages: Pages

    public init(pattern: AccessPattern, threads: Int, background: Bool, backend: BackendKind, pages: Pages = .absent) {
        self.pattern = pattern
        self.threads = threads
        self.background = background
        self.backend = backend
        self.pages = pages
    }

    public var name: String {
        "\(pattern.rawValue)-\(threads)t-\(background ? "bg" : "nobg")-\(backend.rawValue)" + (pages == .stale ? "-stale" : "")
    }

    public var description: String { name }

    /// Parses a name; the backend may be left out (then `defaultBackend`).
    public init(parsing text: String, defaultBackend: BackendKind) throws(AgentError) {
        let parts = text.lowercased().split(separator: "-").map(String.init)
        let usage = "expected PATTERN-THREADSt-bg|nobg[-BACKEND][-stale], like random-1t-nobg-minor"
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
        if rest.last == "stale" {
            pages = .stale
            rest = rest.dropLast()
        }
        var backend = defaultBackend
        if let b = rest.first {
            guard let kind = BackendKind(rawValue: b), rest.count == 1 else {
                throw .invalidArgument("invalid scenario '\(text)': unknown backend '\(b)' (rwp, minor, missing)")
            }
            backend = kind
        }
        self.init(pattern: pattern, threads: threads, background: parts[2] == "bg", backend: backend, pages: pages)
        if let problem { throw .invalidArgument("scenario '\(text)': \(problem)") }
    }

    /// Why this combination cannot run, or nil.
    public var problem: String? {
        if pattern == .hotset && !background {
            return "a hot-set guest touches only part of the arena, so without the background stream the "
                + "migration never finishes: use it with bg"
        }
        if pages == .stale && backend == .missing {
            return "stale pages are measured on a backend that keeps the stale copy (minor or rwp), not missing"
        }
        return nil
    }

    /// The subset `scripts/bench` runs by default: every pattern, 1 and 4
    /// threads, background off and on, on `backend`; the headline scenario again
    /// on the `missing` backend; stale pages (random, no background stream).
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
        return list
    }

    /// Every combination on every backend the kernel offers.
    public static func all(backends: [BackendKind], staleAvailable: Bool) -> [BenchScenario] {
        var list: [BenchScenario] = []
        for backend in backends {
            for pages in staleAvailable ? [Pages.absent, .stale] : [.absent] {
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
