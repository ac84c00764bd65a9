import Foundation
import MediagateCore
import MediagateWire

/// Counts failed logins in a sliding window, so that password guessing is slowed to a crawl
/// without locking the account's owner out.
///
/// Failures count per user name *and* client address (`maxPerUserFromAddress`): five wrong
/// passwords from one attacker's address used to lock the victim out everywhere. A guesser
/// spread over many addresses meets the per-user ceiling across all of them
/// (`maxPerUser`, much higher), and one address guessing many names meets `maxPerAddress`.
///
/// That ceiling alone would still lock the owner out once guessers from enough addresses
/// reached it (Benchmarks/soak.py: 20 addresses did it in seconds). So an address the user
/// logged in from before is a known device for 30 days (`knownDeviceLifetime`), as OWASP's device cookies
/// are: it is exempt from the all-address ceiling (its own failures still count against it).
actor LoginThrottle {
    /// Successful logins remembered, by `user|address`, at most `maxKnownDevices` of them.
    private var knownDevices: [String: Date] = [:]
    private let knownDeviceLifetime: TimeInterval = 30 * 24 * 3600
    private let maxKnownDevices = 100_000
    private let window: TimeInterval
    private let maxPerUserFromAddress: Int
    private let maxPerUser: Int
    private let maxPerAddress: Int
    /// Failure times by key: one table, keyed `user|address`, `user`, `address` with a prefix each.
    private var failures: [String: [Date]] = [:]
    private var recorded = 0

    init(window: TimeInterval, maxPerUserFromAddress: Int, maxPerUser: Int, maxPerAddress: Int) {
        self.window = window
        self.maxPerUserFromAddress = maxPerUserFromAddress
        self.maxPerUser = maxPerUser
        self.maxPerAddress = maxPerAddress
    }

    private static func keys(_ username: String, _ address: String) -> [String] {
        let name = username.lowercased()
        return ["ua \(name) \(address)", "u \(name)", "a \(address)"]
    }

    /// Whether the user logged in from this address within the known-device lifetime.
    private func isKnownDevice(username: String, address: String, now: Date) -> Bool {
        guard let last = knownDevices[Self.keys(username, address)[0]] else { return false }
        return now.timeIntervalSince(last) < knownDeviceLifetime
    }

    /// Whether this is a known device, and the seconds to wait before trying again (nil when
    /// an attempt is allowed now).
    func admission(username: String, address: String, now: Date = Date()) -> (knownDevice: Bool, retryAfter: Int?) {
        let knownDevice = isKnownDevice(username: username, address: address, now: now)
        return (knownDevice, retryAfter(username: username, address: address, knownDevice: knownDevice, now: now))
    }

    private func retryAfter(username: String, address: String, knownDevice: Bool, now: Date) -> Int? {
        var waits = [TimeInterval]()
        for (key, limit) in zip(Self.keys(username, address), [maxPerUserFromAddress, maxPerUser, maxPerAddress]) {
            if knownDevice, key.hasPrefix("u ") { continue }
            let kept = (failures[key] ?? []).filter { now.timeIntervalSince($0) < window }
            failures[key] = kept.isEmpty ? nil : kept
            if kept.count >= limit, let oldest = kept.first { waits.append(oldest.addingTimeInterval(window).timeIntervalSince(now)) }
        }
        return waits.max().map { max(1, Int($0.rounded(.up))) }
    }

    func recordFailure(username: String, address: String, now: Date = Date()) {
        for key in Self.keys(username, address) { failures[key, default: []].append(now) }
        // Keys are only pruned when asked about: a flood of made-up names would otherwise stay.
        recorded += 1
        if recorded % 1024 == 0 {
            failures = failures.compactMapValues { times in
                let kept = times.filter { now.timeIntervalSince($0) < window }
                return kept.isEmpty ? nil : kept
            }
        }
    }

    func recordSuccess(username: String, address: String, now: Date = Date()) {
        let key = Self.keys(username, address)[0]
        failures[key] = nil
        knownDevices[key] = now
        if knownDevices.count > maxKnownDevices {
            // The least recently used tenth goes; a device forgotten only costs the ceiling's exemption.
            for (old, _) in knownDevices.sorted(by: { $0.value < $1.value }).prefix(maxKnownDevices / 10) { knownDevices[old] = nil }
        }
    }
}
