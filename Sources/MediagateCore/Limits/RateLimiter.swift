import Foundation
import Metrics
import Synchronization

/// One limit: a token bucket that holds `burst` tokens and gains `perMinute` a minute. Each
/// action takes one token; an action finding none is refused until one has grown back.
/// `perMinute: 0` is no limit.
public struct RateLimit: Sendable, Codable, Equatable {
    public var perMinute: Double
    public var burst: Int

    public init(perMinute: Double, burst: Int) {
        self.perMinute = perMinute
        self.burst = burst
    }

    public static let unlimited = RateLimit(perMinute: 0, burst: 0)
    package var isUnlimited: Bool { perMinute <= 0 }
}

/// Token buckets by key (a user id, a client address), as Synapse's `rc_*` settings and nginx's
/// `limit_req` keep them. The table is bounded: a full bucket carries no information, so
/// buckets are dropped once full again, and past `maxKeys` the fullest go first, so that a
/// flood of new keys costs memory only up to the bound.
package final class RateLimiter: Sendable {
    package let limit: RateLimit
    /// Which limit, for the refusals counter (`mediagate_rate_limited_total{limit=…}`).
    package let name: String
    private let maxKeys: Int
    private let buckets = Mutex([String: Bucket]())

    private struct Bucket {
        package var tokens: Double
        package var updated: ContinuousClock.Instant
    }

    package init(_ limit: RateLimit, name: String = "other", maxKeys: Int = 100_000) {
        self.limit = limit
        self.name = name
        self.maxKeys = maxKeys
    }

    /// Takes a token for `key`: nil when the action may go ahead, else whole seconds until a
    /// token is there (for `Retry-After`).
    package func retryAfter(_ key: String, now: ContinuousClock.Instant = .now) -> Int? {
        guard !limit.isUnlimited else { return nil }
        let capacity = Double(max(1, limit.burst)), perSecond = limit.perMinute / 60
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
            let elapsed = bucket.updated.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(capacity, bucket.tokens + max(0, seconds) * perSecond)
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return max(1, Int(((1 - bucket.tokens) / perSecond).rounded(.up)))
            }
            bucket.tokens -= 1
            buckets[key] = bucket
            if buckets.count > maxKeys { Self.evict(&buckets, keeping: maxKeys / 2, capacity: capacity, perSecond: perSecond, now: now) }
            return nil
        }
    }

    /// Keys with a bucket now (tests: the table's bound).
    package var keyCount: Int { buckets.withLock { $0.count } }

    /// Drops the buckets closest to full (as of `now`) until `keeping` remain.
    private static func evict(_ buckets: inout [String: Bucket], keeping: Int, capacity: Double, perSecond: Double,
                              now: ContinuousClock.Instant) {
        func level(_ bucket: Bucket) -> Double {
            let elapsed = bucket.updated.duration(to: now)
            return min(capacity, bucket.tokens + Double(elapsed.components.seconds) * perSecond)
        }
        let fullest = buckets.sorted { level($0.value) > level($1.value) }.prefix(buckets.count - keeping)
        for (key, _) in fullest { buckets[key] = nil }
    }
}

/// The server's rate limits (`rateLimits` in the configuration), each answered with 429 and
/// `Retry-After` when exceeded.
public struct RateLimits: Sendable, Codable, Equatable {
    /// Accounts created per client address (`register`, `signup`).
    public var registrationsPerAddress = RateLimit(perMinute: 5, burst: 10)
    /// Messages per user, REST and WebSocket together.
    public var messagesPerUser = RateLimit(perMinute: 300, burst: 60)
    /// Rooms created, joined or members added, per user.
    public var roomActionsPerUser = RateLimit(perMinute: 30, burst: 30)
    /// Uploads started per user (tus creations and multipart uploads).
    public var uploadsPerUser = RateLimit(perMinute: 600, burst: 200)

    public init() {}

    /// Every limit off (benchmarks that measure the server, not its limits).
    public static var none: RateLimits {
        var limits = RateLimits()
        limits.registrationsPerAddress = .unlimited
        limits.messagesPerUser = .unlimited
        limits.roomActionsPerUser = .unlimited
        limits.uploadsPerUser = .unlimited
        return limits
    }

    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        registrationsPerAddress = try container.decodeIfPresent(RateLimit.self, forKey: .registrationsPerAddress) ?? registrationsPerAddress
        messagesPerUser = try container.decodeIfPresent(RateLimit.self, forKey: .messagesPerUser) ?? messagesPerUser
        roomActionsPerUser = try container.decodeIfPresent(RateLimit.self, forKey: .roomActionsPerUser) ?? roomActionsPerUser
        uploadsPerUser = try container.decodeIfPresent(RateLimit.self, forKey: .uploadsPerUser) ?? uploadsPerUser
    }
}

/// One limiter per limit, shared by the routes that count against it (uploads are counted by
/// `UploadPolicy`, which both upload paths already share).
package struct RateLimiters: Sendable {
    package let registrations: RateLimiter
    package let messages: RateLimiter
    package let roomActions: RateLimiter

    package init(_ limits: RateLimits) {
        registrations = RateLimiter(limits.registrationsPerAddress, name: "registrations")
        messages = RateLimiter(limits.messagesPerUser, name: "messages")
        roomActions = RateLimiter(limits.roomActionsPerUser, name: "room_actions")
    }
}

extension RateLimiter {
    /// Throws 429 `too_many_requests` with `Retry-After` when `key` has no token left.
    package func check(_ key: String, _ what: String) throws {
        if let wait = retryAfter(key) {
            Counter(label: "mediagate_rate_limited_total", dimensions: [("limit", name)]).increment()
            throw DomainError.rateLimited(retryAfter: wait, what: what)
        }
    }
}
