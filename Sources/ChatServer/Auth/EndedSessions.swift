import Synchronization
import MediagateCore
import MediagateWire

/// Logins (refresh-token families) that ended by logout or revocation while access tokens
/// issued to them may still be unexpired. Every authenticated request asks; the answer is a
/// lookup in memory, not a database read. An entry lives as long as the longest an access
/// token of that login can (`accessLifetime` from the end), so the table holds at most the
/// logins ended in the last 15 minutes. Filled from the database at start-up (see
/// `TokenService.make`); one node's memory: several nodes will need to share it (#14).
final class EndedSessions: Sendable {
    private let accessLifetime: Duration
    private let ended = Mutex([String: ContinuousClock.Instant]())

    init(accessLifetime: Duration) {
        self.accessLifetime = accessLifetime
    }

    func end(_ family: String, now: ContinuousClock.Instant = .now) {
        ended.withLock { ended in
            ended[family] = now + accessLifetime
            // Pruned as entries are added, so the table never outgrows the window.
            if ended.count % 64 == 0 { ended = ended.filter { $0.value > now } }
        }
    }

    func contains(_ family: String, now: ContinuousClock.Instant = .now) -> Bool {
        ended.withLock { ended in
            guard let until = ended[family] else { return false }
            return until > now
        }
    }
}
