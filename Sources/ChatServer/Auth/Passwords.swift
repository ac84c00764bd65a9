import HummingbirdBcrypt
import NIOPosix

/// bcrypt hashing, run on NIO's blocking thread pool: a cost-12 hash takes ~250 ms of CPU and
/// must never run on an event loop or Swift's cooperative pool.
struct Passwords: Sendable {
    var cost: UInt8
    var threadPool: NIOThreadPool = .singleton

    func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await threadPool.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    func verify(_ password: String, against hash: String) async throws -> Bool {
        try await threadPool.runIfActive { Bcrypt.verify(password, hash: hash) }
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
