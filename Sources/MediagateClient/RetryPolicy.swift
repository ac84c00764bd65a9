import Foundation

/// How long to keep trying: exponential backoff with full jitter ("AWS-style": a random pause
/// between zero and `base · 2^n`, capped), so clients that failed together do not return together.
public struct RetryPolicy: Sendable {
    /// Failures in a row, without a byte of progress between them, before giving up.
    public var maxAttempts: Int = 10
    public var baseDelay: Duration = .milliseconds(250)
    public var maxDelay: Duration = .seconds(20)

    public init(maxAttempts: Int = 10, baseDelay: Duration = .milliseconds(250), maxDelay: Duration = .seconds(20)) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The pause before retry number `attempt` (1-based).
    public func delay(before attempt: Int) -> Duration {
        let ceiling = min(Double(maxDelay.milliseconds), Double(baseDelay.milliseconds) * pow(2, Double(attempt - 1)))
        return .milliseconds(Int64(Double.random(in: 0...max(1, ceiling))))
    }
}

/// The failures of one operation, counted against a `RetryPolicy`.
struct RetryBudget {
    let policy: RetryPolicy
    private(set) var failures = 0

    init(_ policy: RetryPolicy) { self.policy = policy }

    /// Progress was made: the next failure starts the count again.
    mutating func reset() { failures = 0 }

    /// Sleeps before the next attempt, or throws when `error` is final or the budget is spent.
    mutating func pause(after error: ClientError) throws {
        guard error.isRetryable else { throw error }
        failures += 1
        guard failures < policy.maxAttempts else { throw ClientError.gaveUp(attempts: failures, last: error.description) }
        var delay = policy.delay(before: failures)
        if case .http(let status, _, _) = error, status == 409 || status == 460 {
            delay = .zero // the server told us where it is; ask and go on
        }
        if case .busy(_, let seconds) = error {
            delay = max(delay, .seconds(min(seconds, 60))) // as asked, within reason
        }
        let milliseconds = delay.milliseconds
        if milliseconds > 0 { usleep(useconds_t(min(milliseconds, 60_000) * 1000)) }
    }
}
