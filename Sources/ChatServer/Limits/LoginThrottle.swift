import Foundation

/// Counts failed logins per user name and per client address in a sliding window, so that
/// password guessing is slowed to a crawl without locking anyone out for long.
actor LoginThrottle {
    private let window: TimeInterval
    private let maxPerUser: Int
    private let maxPerAddress: Int
    private var failuresByUser: [String: [Date]] = [:]
    private var failuresByAddress: [String: [Date]] = [:]

    init(window: TimeInterval, maxPerUser: Int, maxPerAddress: Int) {
        self.window = window
        self.maxPerUser = maxPerUser
        self.maxPerAddress = maxPerAddress
    }

    /// Seconds to wait before trying again, or nil when an attempt is allowed now.
    func retryAfter(username: String, address: String, now: Date = Date()) -> Int? {
        let user = prune(&failuresByUser, username.lowercased(), now)
        let byAddress = prune(&failuresByAddress, address, now)
        var waits = [TimeInterval]()
        if user.count >= maxPerUser, let oldest = user.first { waits.append(oldest.addingTimeInterval(window).timeIntervalSince(now)) }
        if byAddress.count >= maxPerAddress, let oldest = byAddress.first {
            waits.append(oldest.addingTimeInterval(window).timeIntervalSince(now))
        }
        return waits.max().map { max(1, Int($0.rounded(.up))) }
    }

    func recordFailure(username: String, address: String, now: Date = Date()) {
        failuresByUser[username.lowercased(), default: []].append(now)
        failuresByAddress[address, default: []].append(now)
    }

    func recordSuccess(username: String) {
        failuresByUser[username.lowercased()] = nil
    }

    private func prune(_ table: inout [String: [Date]], _ key: String, _ now: Date) -> [Date] {
        let kept = (table[key] ?? []).filter { now.timeIntervalSince($0) < window }
        table[key] = kept.isEmpty ? nil : kept
        return kept
    }
}
