import Foundation
import Logging
import MediagateCore
import MediagateDiskStorage
import MediagatePostgres
import MediagateS3
import MediagateSQLite
import NIOPosix
import ServiceLifecycle
import Synchronization

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

/// Where stored files' bytes and uploads in progress live, chosen by the configuration's
/// `blobStore`: the data directory (the embedded default), or an S3 bucket every node shares
/// (stored files with a bounded cache of them on this node's disk; uploads as multipart
/// uploads, so that any node continues one).
struct ByteStores {
    var blobs: any BlobStore
    var uploads: any UploadStore

    static func open(_ configuration: ChatConfiguration, environment: [String: String]) throws -> ByteStores {
        guard let url = configuration.blobStore, !url.isEmpty else {
            return ByteStores(blobs: try DiskBlobStore(dataDirectory: configuration.dataDirectory),
                              uploads: try DiskUploadStore(dataDirectory: configuration.dataDirectory))
        }
        let location: S3Location
        do { location = try S3Location(url: url, environment: environment) } catch { throw ConfigurationError(message: "blobStore: \(error)") }
        guard let credentials = S3Credentials.fromEnvironment(environment) else {
            throw ConfigurationError(message: "blobStore is S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        let cache = try BlobCache(directory: (configuration.dataDirectory as NSString).appendingPathComponent("blob-cache"),
                                  maxBytes: configuration.blobCacheBytes)
        let client = S3Client(location: location, credentials: credentials)
        let uploads = try S3UploadStore(client: client, partBytes: configuration.uploadPartBytes,
                                        directory: (configuration.dataDirectory as NSString).appendingPathComponent("upload-staging"))
        return ByteStores(blobs: S3BlobStore(client: client, cache: cache), uploads: uploads)
    }
}

/// Closes the database's connections when the application shuts down, after everything that
/// uses them: a service group shuts its services down in reverse order, so this one goes first
/// in the list. (Last, it closed the pool under the job runner and the sweeper, whose queries
/// then waited on a pool that no longer ran.)
struct DatabaseCloser: Service {
    let close: @Sendable () async -> Void

    func run() async throws {
        try? await gracefulShutdown()
        await close()
    }
}

/// `GET /readyz`: whether this node can serve traffic. The database must answer a query, the
/// data directory (upload bytes, blobs or their cache) must take a file and the blob store
/// answer (S3: the bucket), each within `timeout`; a load balancer stops sending requests to a
/// node that cannot.
///
/// The answer never waits longer than `timeout`: a probe still running then counts as failing
/// and is left to finish on its own (a query waiting for a connection to a database that
/// refuses them can wait a minute or more, and cancelling it does not end that wait). While
/// it runs, later checks fail at once instead of queueing more probes behind it, for up to
/// 10 s; then a new probe starts beside it.
final class Readiness: Sendable {
    let repositories: Repositories
    let dataDirectory: String
    let blobs: any BlobStore
    let timeout: Duration
    private let database = InFlightProbe()
    private let storage = InFlightProbe()
    private let blobStore = InFlightProbe()

    init(repositories: Repositories, dataDirectory: String, blobs: any BlobStore, timeout: Duration = .seconds(2)) {
        self.repositories = repositories
        self.dataDirectory = dataDirectory
        self.blobs = blobs
        self.timeout = timeout
    }

    struct Report: Sendable {
        var failing: [String]
        var engine: String
    }

    func check() async -> Report {
        let repositories = repositories
        async let databasePasses = database.passes(within: timeout) { try await repositories.ping() }
        async let storagePasses = storage.passes(within: timeout) { [dataDirectory] in try await Self.writeProbe(in: dataDirectory) }
        // Blobs on disk are the data directory's, probed above: no third probe for them.
        let remote = !(blobs is DiskBlobStore)
        async let blobsPass = remote ? blobStore.passes(within: timeout) { [blobs] in try await blobs.checkReachable() } : true
        var failing: [String] = []
        if await !databasePasses { failing.append("database") }
        if await !storagePasses { failing.append("storage") }
        if await !blobsPass { failing.append("blob_store") }
        return Report(failing: failing, engine: repositories.engine)
    }

    /// A thread of the probe's own: on the shared I/O pool, a node busy hashing and writing
    /// uploads answered "not ready" (seen under test load), and a balancer that drops busy
    /// nodes moves their load onto the others.
    private static let probeThread: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    private static func writeProbe(in dataDirectory: String) async throws {
        let path = (dataDirectory as NSString).appendingPathComponent(".readyz-\(getpid())")
        try await probeThread.runIfActive {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw SystemCallError("open", errno) }
            close(descriptor)
            unlink(path)
        }
    }
}

/// One kind of readiness probe: an answer within a time limit, and probes that outlive it
/// bounded (one at a time, a new one only once the last is `abandonAfter` old).
private final class InFlightProbe: Sendable {
    private let startedAt = Mutex<ContinuousClock.Instant?>(nil)
    private let abandonAfter: Duration = .seconds(10)

    func passes(within timeout: Duration, _ probe: @escaping @Sendable () async throws -> Void) async -> Bool {
        let now = ContinuousClock.now
        guard startedAt.withLock({ started in
            if let started, now - started < abandonAfter { return false }
            started = now
            return true
        }) else { return false }
        let answer = Mutex<CheckedContinuation<Bool, Never>?>(nil)
        let answerOnce: @Sendable (Bool) -> Void = { passed in answer.withLock { $0.take() }?.resume(returning: passed) }
        return await withCheckedContinuation { continuation in
            answer.withLock { $0 = continuation }
            // Unstructured on purpose: the answer must not wait for a probe that will not end.
            Task {
                let passed = (try? await probe()) != nil
                self.startedAt.withLock { if $0 == now { $0 = nil } }
                answerOnce(passed)
            }
            Task {
                try? await Task.sleep(for: timeout)
                answerOnce(false)
            }
        }
    }
}
