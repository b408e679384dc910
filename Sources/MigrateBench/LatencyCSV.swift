import Dispatch
import FoundationEssentials
import Glibc
import Histogram
import MigrateAgent

/// Latency distributions as CSV files (`--csv DIR`): one file per scenario
/// and per baseline, `percentile,latency_us` rows from HdrHistogram's
/// percentile levels (denser towards the tail), plus `floor.csv` with the
/// floors (`reference` marks the one ratios use), for `scripts/plot-latency`. Stateless.
public enum LatencyCSV {
    public static func write(_ distributions: [(name: String, histogram: Histogram<UInt64>)], floors: [FaultFloor],
                             to directory: String) throws(AgentError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for (name, histogram) in distributions {
                try rows(histogram).write(toFile: "\(directory)/\(name).csv", atomically: true, encoding: .utf8)
            }
            let reference = floors.min { $0.p50 < $1.p50 }?.placement
            let floorRows = ["placement,p50_us,p99_us,reference"]
                + floors.map { "\($0.placement.rawValue),\($0.p50),\($0.p99),\($0.placement == reference ? 1 : 0)" }
            try (floorRows.joined(separator: "\n") + "\n").write(toFile: "\(directory)/floor.csv", atomically: true, encoding: .utf8)
        } catch {
            throw .system("cannot write the CSV files to \(directory): \(error.reasonText)")
        }
    }

    /// `percentile,latency_us` rows: every whole percentile, then finer steps
    /// into the tail (99.1…99.9, 99.91…99.99, 99.991…99.999), then 100 (the
    /// maximum). Only the header for an empty histogram.
    static func rows(_ h: Histogram<UInt64>) -> String {
        var lines = ["percentile,latency_us"]
        if h.totalCount > 0 {
            for p in levels {
                let value = p >= 100 ? h.max : h.valueAtPercentile(p)
                lines.append(String(format: "%.3f,%.3f", p, Double(value) / 1000))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static let levels: [Double] = {
        var levels: [Double] = (0..<100).map(Double.init)
        for step in [0.1, 0.01, 0.001] {
            let start: Double = 100 - step * 10
            levels += (1...9).map { (start + Double($0) * step).rounded(toPlaces: 3) }
        }
        return levels + [100]
    }()
}
