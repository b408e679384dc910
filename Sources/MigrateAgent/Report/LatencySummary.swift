import Histogram

/// Percentiles of a latency histogram recorded in nanoseconds, reported in microseconds.
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: UInt64
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double
    public var mean: Double

    public init(_ h: Histogram<UInt64>) {
        count = h.totalCount
        func micros(_ v: UInt64) -> Double { (Double(v) / 1000).rounded(toPlaces: 2) }
        p50 = count == 0 ? 0 : micros(h.valueAtPercentile(50))
        p90 = count == 0 ? 0 : micros(h.valueAtPercentile(90))
        p99 = count == 0 ? 0 : micros(h.valueAtPercentile(99))
        p999 = count == 0 ? 0 : micros(h.valueAtPercentile(99.9))
        max = count == 0 ? 0 : micros(h.max)
        mean = count == 0 ? 0 : (h.mean / 1000).rounded(toPlaces: 2)
    }

    /// A histogram for nanosecond latencies up to a minute, to three digits (the benchmark's baselines).
    public static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    }

    /// Two significant digits (values within 1%): the guest's fault latencies and the
    /// destination's phase breakdown, in an eighth of the memory (a three-digit histogram
    /// to 60 s holds ~220 KB of counts, all of it written, and the guest keeps one a thread).
    public static func makeCompactHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .two)
    }
}

extension Double {
    /// Rounded to `places` decimal places, for figures in reports (the demo and the benchmark use it too).
    public func rounded(toPlaces places: Int) -> Double {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        return (self * scale).rounded() / scale
    }
}
