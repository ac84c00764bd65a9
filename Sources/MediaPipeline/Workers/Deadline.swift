/// The moment one file's decoding must be finished by, handed to libvips and FFmpeg as an
/// absolute time on each library's own monotonic clock.
struct Deadline: Sendable {
    let instant: ContinuousClock.Instant

    init(after limit: Duration) {
        instant = .now + limit
    }

    var hasPassed: Bool { ContinuousClock.now >= instant }

    /// Microseconds left, never negative.
    var remainingMicroseconds: Int64 {
        let left = ContinuousClock.now.duration(to: instant)
        let (seconds, attoseconds) = left.components
        return max(1, seconds * 1_000_000 + attoseconds / 1_000_000_000_000)
    }

    /// The deadline on a clock that reads `now` microseconds.
    func onClock(now: Int64) -> Int64 {
        now + remainingMicroseconds
    }
}
