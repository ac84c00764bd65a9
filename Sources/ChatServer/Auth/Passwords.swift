import Crypto
import Foundation
import HummingbirdBcrypt
import NIOPosix
import Synchronization

/// bcrypt hashing on a thread pool of its own: a cost-12 hash takes ~250 ms of CPU and must
/// never run on an event loop or Swift's cooperative pool, nor on NIO's shared blocking pool,
/// where file reads and `fdatasync`s of every upload would queue behind it.
struct Passwords: Sendable {
    var cost: UInt8
    var threadPool: NIOThreadPool = Passwords.pool
    /// What an unknown user's password is checked against, hashed at `cost` like real ones so
    /// that timing does not tell which names exist (a fixed cost-12 decoy made each failed
    /// login cost 64 times a real one where `cost` is 6, and told the difference).
    let decoyHash: String

    /// Hashes waiting or running at most (`maxPendingPasswordHashes`); past it a login or
    /// registration is answered 503 at once rather than queued behind a flood for seconds.
    var maxPending = 64
    /// Hashes waiting or running for this server.
    private let pending = PendingCount()

    /// Two threads for the process: bcrypt is pure CPU, and two cores are the machine.
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    /// Hashes the decoy (on the pool, like every hash).
    static func make(cost: UInt8, maxPending: Int = 64) async throws -> Passwords {
        let secret = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
        let decoy = try await pool.runIfActive { Bcrypt.hash(secret, cost: cost) }
        var passwords = Passwords(cost: cost, decoyHash: decoy)
        passwords.maxPending = maxPending
        return passwords
    }

    func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await admitted { try await threadPool.runIfActive { Bcrypt.hash(password, cost: cost) } }
    }

    func verify(_ password: String, against hash: String) async throws -> Bool {
        try await admitted { try await threadPool.runIfActive { Bcrypt.verify(password, hash: hash) } }
    }

    /// Runs `work` if fewer than `maxPending` hashes are waiting or running; 503 otherwise.
    private func admitted<T: Sendable>(_ work: () async throws -> T) async throws -> T {
        guard pending.count.wrappingAdd(1, ordering: .relaxed).newValue <= maxPending else {
            pending.count.wrappingSubtract(1, ordering: .relaxed)
            throw APIError(.serviceUnavailable, code: "overloaded", "too many logins and registrations at once; retry shortly",
                           headers: [.retryAfter: "1"])
        }
        defer { pending.count.wrappingSubtract(1, ordering: .relaxed) }
        return try await work()
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
