import Foundation
import Logging
import MediagateCore
import MediagateDiskStorage
import MediagatePostgres
import MediagateSQLite
import NIOPosix
import ServiceLifecycle

/// Every repository of one database engine, chosen by the configuration's `database`: SQLite
/// in the data directory (the embedded default), or a PostgreSQL server that several nodes
/// share. Nothing past this point knows which.
struct Repositories: Sendable {
    var users: any UserRepository
    var refreshTokens: any RefreshTokenRepository
    var rooms: any RoomRepository
    var messages: any MessageRepository
    var reactions: any ReactionRepository
    var uploads: any UploadRepository
    var files: any FileRepository
    var jobs: any JobQueue
    var signingKeys: any SigningKeyRepository
    /// Which engine, for logs and `/readyz`.
    var engine: String
    /// Closes the engine's connections (PostgreSQL's pool); SQLite closes with the process.
    var close: @Sendable () -> Void = {}
    /// How full PostgreSQL's NOTIFY queue is (0-1); nil without PostgreSQL.
    var notifyQueueUsage: (@Sendable () async throws -> Double)?
    /// Runs a trivial query: whether the database answers (`/readyz`).
    var ping: @Sendable () async throws -> Void
    /// The shared database, when there is one: room events cross nodes through it.
    var postgres: PostgresDatabase?

    /// How room events reach sockets: through PostgreSQL to every node, or within this process.
    func broker(hub: ChatHub, signer: URLSigner, logger: Logger) async -> any ChatBroker {
        guard let postgres else { return InProcessChatBroker(hub: hub) }
        let broker = PostgresChatBroker(db: postgres, hub: hub, messages: messages, signer: signer, logger: logger)
        await broker.start()
        return broker
    }

    static func open(_ configuration: ChatConfiguration, logger: Logger) async throws -> Repositories {
        if let url = configuration.database, !url.isEmpty {
            let db = try await PostgresDatabase(url: url, maxConnections: configuration.databaseConnections, logger: logger)
            return Repositories(users: PostgresUserRepository(db), refreshTokens: PostgresRefreshTokenRepository(db),
                                rooms: PostgresRoomRepository(db), messages: PostgresMessageRepository(db),
                                reactions: PostgresReactionRepository(db), uploads: PostgresUploadRepository(db),
                                files: PostgresFileRepository(db), jobs: PostgresJobQueue(db), signingKeys: PostgresSigningKeys(db),
                                engine: "postgresql", close: { db.shutdown() },
                                notifyQueueUsage: {
                                    for try await usage in try await db.client.query("SELECT pg_notification_queue_usage()", logger: logger)
                                        .decode(Double.self) { return usage }
                                    return 0
                                },
                                ping: { try await db.client.query("SELECT 1", logger: logger) }, postgres: db)
        }
        let db = try SQLiteDatabase(directory: configuration.dataDirectory)
        return Repositories(users: SQLiteUserRepository(pool: db.pool), refreshTokens: SQLiteRefreshTokenRepository(pool: db.pool),
                            rooms: SQLiteRoomRepository(pool: db.pool), messages: SQLiteMessageRepository(pool: db.pool),
                            reactions: SQLiteReactionRepository(pool: db.pool), uploads: SQLiteUploadRepository(pool: db.pool),
                            files: SQLiteFileRepository(pool: db.pool), jobs: SQLiteJobQueue(pool: db.pool),
                            signingKeys: DirectorySigningKeys(directory: configuration.dataDirectory), engine: "sqlite",
                            ping: { try await db.pool.read { try $0.execute(sql: "SELECT 1") } })
    }
}

/// Closes the database's connections when the application shuts down.
struct DatabaseCloser: Service {
    let close: @Sendable () -> Void

    func run() async throws {
        try? await gracefulShutdown()
        close()
    }
}

/// `GET /readyz`: whether this node can serve traffic. The database must answer a query and the
/// data directory (upload bytes, blobs) must take a file, each within `timeout`; a load
/// balancer stops sending requests to a node that cannot.
struct Readiness: Sendable {
    let repositories: Repositories
    let dataDirectory: String
    var timeout: Duration = .seconds(2)

    struct Report: Sendable {
        var failing: [String]
        var engine: String
    }

    func check() async -> Report {
        async let database = passes(repositories.ping)
        async let storage = passes { try await writeProbe() }
        var failing: [String] = []
        if await !database { failing.append("database") }
        if await !storage { failing.append("storage") }
        return Report(failing: failing, engine: repositories.engine)
    }

    private func writeProbe() async throws {
        let path = (dataDirectory as NSString).appendingPathComponent(".readyz-\(getpid())")
        try await NIOThreadPool.singleton.runIfActive {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw SystemCallError("open", errno) }
            close(descriptor)
            unlink(path)
        }
    }

    private func passes(_ probe: @escaping @Sendable () async throws -> Void) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await probe()) != nil }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
