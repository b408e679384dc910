import ArgumentParser

/// The accepted range of every numeric option, in one place, each with why.
/// A value outside is refused by the command's `validate()` with one line
/// that names the option, the range and the value; seconds must be finite.
enum OptionBounds {
    /// `--peer-timeout`: below 0.1 s a busy machine's scheduling alone ends a
    /// migration; above a day nobody is waiting any more.
    static let peerTimeoutSeconds = 0.1...86_400.0
    /// 0 turns resume off; an hour is longer than any link outage worth waiting out with a guest blocked.
    static let reconnectTimeoutSeconds = 0.0...3_600.0
    /// Long enough for a slow network's key proof, short enough that idle connections cannot pile up.
    static let handshakeTimeoutSeconds = 0.1...600.0
    /// `--timeout` (demo), `--run-timeout` (bench), `--timeout` (selftest):
    /// at least a second, at most a day.
    static let runTimeoutSeconds = 1.0...86_400.0
    /// `--dirty-rate` (pages a second): a million 4 KiB pages is 4 GB/s, more
    /// than the synthetic guest writes on any machine; far larger values made
    /// one pacing tick of its threads last for ever, so pre-copy never ended.
    static let dirtyRate = 0...1_000_000
    /// `--busy-poll` (microseconds): polling longer than a second after each
    /// demand burst is a spinning CPU, not a latency knob (and overflowed).
    static let busyPollMicros = 0...1_000_000
    /// `--loop-slice` (microseconds): what the kernel accepts as a custom slice (0.1 to 100 ms).
    static let loopSliceMicros = 100...100_000
    /// `--precopy-rounds`: a round copies what the previous one dirtied;
    /// a hundred is far beyond convergence, and the count bounds how long a
    /// guest that never converges delays the switch-over.
    static let precopyRounds = 0...100
    /// `--guest-threads` of the destination (0: an idle guest) and the demo.
    static let destinationGuestThreads = 0...256
    /// `--max-bandwidth` (bytes a second): below 1 MiB/s even a small guest takes minutes to move.
    static let minimumBandwidth = 1 << 20
    /// `--link-pacing` (bench): a percentage of the link's rate; 0 is unpaced.
    static let linkPacingPercent = 0...100
    /// `--guest-threads` of the source.
    static let sourceGuestThreads = 1...256
    /// `--guest-access-rate` (accesses a second): 0 is unpaced; a billion is beyond any thread.
    static let guestAccessRate = 0...1_000_000_000
    /// `--track-seconds`: 0 is off; an hour of warm-up delays a migration more than any hot set repays.
    static let trackSeconds = 0.0...3_600.0
    /// `--track-interval` (ms): below 10 ms the scans cost more than they learn; above a minute the scores are stale.
    static let trackIntervalMillis = 10...60_000
    /// `--repetitions` (bench).
    static let repetitions = 1...1_000
    /// `--baseline-samples` (bench): 100 for a percentile, 10 million at most (memory).
    static let baselineSamples = 100...10_000_000
}

/// Refuses `value` unless it is finite and in `range`.
func checkSeconds(_ value: Double, _ option: String, in range: ClosedRange<Double>) throws {
    guard value.isFinite, range.contains(value) else {
        throw ValidationError("\(option) must be a number of seconds from \(range.lowerBound) to \(range.upperBound), not \(value)")
    }
}

/// Refuses `value` unless it is in `range`.
func checkRange(_ value: Int, _ option: String, in range: ClosedRange<Int>) throws {
    guard range.contains(value) else {
        throw ValidationError("\(option) must be from \(range.lowerBound) to \(range.upperBound), not \(value)")
    }
}

/// Refuses a fraction unless it is in 0...1 (NaN is not).
func checkFraction(_ value: Double, _ option: String) throws {
    guard (0...1).contains(value) else { throw ValidationError("\(option) must be between 0 and 1, not \(value)") }
}
