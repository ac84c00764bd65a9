import Crypto
import Foundation
import HummingbirdBcrypt
import NIOPosix
import Synchronization
import MediagateCore
import MediagateWire

/// bcrypt on thread pools of its own: a cost-12 hash takes ~250 ms of CPU and must never run on
/// an event loop or Swift's cooperative pool, nor on NIO's shared blocking pool, where file
/// reads and `fdatasync`s of every upload would queue behind it.
///
/// Work is split in lanes, each a pool with its own bound on waiting work, because floods
/// queued honest logins behind them (Benchmarks/soak.py): a registration flood from many
/// addresses (each within its rate limit) filled both threads and the queue, and honest logins
/// waited seconds or got 503; guesses at one user's password from many addresses queued that
/// user's own login behind 100 hashes (3.5 s). So new accounts get one thread, logins two, and
/// a login from an address the user logged in from before (a known device, `LoginThrottle`)
/// one of its own that guessers cannot fill.
struct Passwords: Sendable {
    /// Threads for the process, by lane.
    static let loginThreads = started(NIOThreadPool(numberOfThreads: 2))
    static let knownDeviceThreads = started(NIOThreadPool(numberOfThreads: 1))
    static let registrationThreads = started(NIOThreadPool(numberOfThreads: 1))

    private static func started(_ pool: NIOThreadPool) -> NIOThreadPool {
        pool.start()
        return pool
    }

    /// One lane of this server: its threads, and how much of its work is waiting or running.
    struct Lane: Sendable {
        let pool: NIOThreadPool
        let pending = PendingCount()
    }

    let logins = Lane(pool: loginThreads)
    let knownDeviceLogins = Lane(pool: knownDeviceThreads)
    let registrations = Lane(pool: registrationThreads)

    var cost: UInt8
    /// What an unknown user's password is checked against, hashed at `cost` like real ones so
    /// that timing does not tell which names exist (a fixed cost-12 decoy made each failed
    /// login cost 64 times a real one where `cost` is 6, and told the difference).
    let decoyHash: String

    /// Hashes waiting or running at most in each lane (`maxPendingPasswordHashes`); past it a
    /// login or registration is answered 503 at once rather than queued behind a flood.
    var maxPending = 64

    /// Hashes the decoy (on the pool, like every hash).
    static func make(cost: UInt8, maxPending: Int = 64) async throws -> Passwords {
        let secret = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
        let decoy = try await loginThreads.runIfActive { Bcrypt.hash(secret, cost: cost) }
        var passwords = Passwords(cost: cost, decoyHash: decoy)
        passwords.maxPending = maxPending
        return passwords
    }

    func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await run(in: registrations) { Bcrypt.hash(password, cost: cost) }
    }

    /// `knownDevice`: the user logged in from this address before (its own lane).
    func verify(_ password: String, against hash: String, knownDevice: Bool = false) async throws -> Bool {
        try await run(in: knownDevice ? knownDeviceLogins : logins) { Bcrypt.verify(password, hash: hash) }
    }

    /// Runs `work` in `lane` if fewer than `maxPending` of its hashes are waiting or running;
    /// 503 otherwise.
    private func run<T: Sendable>(in lane: Lane, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        guard lane.pending.count.wrappingAdd(1, ordering: .relaxed).newValue <= maxPending else {
            lane.pending.count.wrappingSubtract(1, ordering: .relaxed)
            throw APIError(.serviceUnavailable, code: "overloaded", "too many logins and registrations at once; retry shortly",
                           headers: [.retryAfter: "1"])
        }
        defer { lane.pending.count.wrappingSubtract(1, ordering: .relaxed) }
        return try await lane.pool.runIfActive(work)
    }

    /// Checked by `register` and `mediagate user add`.
    static func validate(username: String, password: String) throws {
        guard (1...32).contains(username.count),
              username.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            throw APIError.unprocessable("user names are 1-32 characters: letters, digits, '.', '_' or '-'")
        }
        guard (8...128).contains(password.count) else {
            throw APIError.unprocessable("passwords are 8-128 characters")
        }
    }
}

/// A counter shared by the copies of one `Passwords`.
final class PendingCount: Sendable {
    let count = Atomic<Int>(0)
}
