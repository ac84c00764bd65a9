import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import Logging
@testable import ChatServer
@testable import MediagateCore
@testable import MediagateSQLite
import MediagateTestSupport
import Testing

/// The durable processing queue on SQLite: leases, retries, giving up; and the records' columns.
@Suite("processing queue")
struct ProcessingQueueTests {
    static func database() throws -> SQLiteDatabase {
        try SQLiteDatabase(directory: try Fixtures.temporaryDirectory("queue").path)
    }

    /// An account and a completed upload to hang jobs on (jobs name uploads).
    static func completedUpload(_ db: SQLiteDatabase, id: String) async throws {
        let user = try #require(try await SQLiteUserRepository(pool: db.pool).create(username: "u\(id)", passwordHash: "x"))
        let uploads = SQLiteUploadRepository(pool: db.pool)
        let now = Date()
        _ = try await uploads.create(UploadRecord(id: id, userId: user.id, length: 3, offset: 0, metadata: nil, createdAt: now,
                                                  expiresAt: now.addingTimeInterval(60)), quota: nil, maxOpen: nil)
        try await uploads.advance(id: id, to: 3, length: 3, completedAt: now, processing: ProcessingJob(uploadId: id))
    }

    @Test("a leased job is nobody else's until its lease ends; then it is taken again, its attempts counted")
    func leases() async throws {
        let db = try Self.database()
        try await Self.completedUpload(db, id: "a")
        let queue = SQLiteJobQueue(pool: db.pool)
        let now = Date()
        let first = try #require(try await queue.claim(owner: "node-1", lease: 10, now: now))
        #expect(first.job.uploadId == "a" && first.attempts == 1)
        #expect(try await queue.claim(owner: "node-2", lease: 10, now: now.addingTimeInterval(9)) == nil)
        let depth = try await queue.depth(now: now.addingTimeInterval(1))
        #expect(depth.queued == 0 && depth.running == 1)
        // node-1 died: after the lease another node takes the job.
        let second = try #require(try await queue.claim(owner: "node-2", lease: 10, now: now.addingTimeInterval(11)))
        #expect(second.id == first.id && second.attempts == 2)
        try await queue.complete(second.id)
        #expect(try await queue.claim(owner: "node-3", lease: 10, now: now.addingTimeInterval(100)) == nil)
    }

    @Test("a failed job waits for its retry time; enqueueing the same upload twice makes one job")
    func retries() async throws {
        let db = try Self.database()
        try await Self.completedUpload(db, id: "b")
        let queue = SQLiteJobQueue(pool: db.pool)
        let now = Date()
        try await queue.enqueue(ProcessingJob(uploadId: "b"), now: now) // already queued by the completing advance
        let job = try #require(try await queue.claim(owner: "n", lease: 60, now: now))
        try await queue.retry(job.id, at: now.addingTimeInterval(30), error: "decoder crashed")
        #expect(try await queue.claim(owner: "n", lease: 60, now: now.addingTimeInterval(29)) == nil)
        let again = try #require(try await queue.claim(owner: "n", lease: 60, now: now.addingTimeInterval(31)))
        #expect(again.id == job.id && again.attempts == 2)
        let lastError = try await db.pool.read { try String.fetchOne($0, sql: "SELECT last_error FROM jobs") }
        #expect(lastError == "decoder crashed")
    }

    @Test("a job that keeps failing ends as corrupt: the upload answers 422 corrupt and its bytes are gone")
    func givesUp() async throws {
        let configuration = try testConfiguration()
        let services = try await ChatServices(configuration: configuration)
        let app = Application(router: ChatRouters(services: services).http)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let location = try await TusUploadTests.create(client, token: alice.access, length: 5)
            let id = String(location.split(separator: "/").last!)
            // The bytes are removed behind the server's back: processing cannot succeed.
            try FileManager.default.removeItem(atPath: try await services.uploadStore.localPath(id, state: nil))
            try await services.uploads.advance(id: id, to: 5, length: 5, completedAt: Date(), processing: ProcessingJob(uploadId: id))
            let runner = ProcessingJobRunner(jobs: services.jobs, ingest: services.ingest, owner: "test", lease: 60, maxAttempts: 2,
                                             doorbell: Doorbell(), logger: Logger(label: "test"))
            let first = try #require(try await services.jobs.claim(owner: "test", lease: 60, now: Date()))
            await runner.runOne(first)
            #expect(try await services.uploads.upload(id: id)?.rejection == nil) // one failure: retried later
            let second = try #require(try await services.jobs.claim(owner: "test", lease: 60, now: Date().addingTimeInterval(600)))
            #expect(second.attempts == 2)
            await runner.runOne(second)
            let response = try await client.call(.get, location, token: alice.access)
            #expect(response.status == .unprocessableContent && response.errorCode == "corrupt", "\(response.body)")
            #expect(try await services.jobs.claim(owner: "test", lease: 60, now: Date().addingTimeInterval(3600)) == nil)
        }
    }

    @Test("records keep the schema's column types: dates are seconds (REAL), attachments JSON text")
    func columnTypes() async throws {
        let db = try Self.database()
        try await Self.completedUpload(db, id: "c")
        let types = try await db.pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT typeof(users.created_at) AS user, typeof(uploads.created_at) AS upload, typeof(uploads.completed_at) AS completed,
                       typeof(jobs.run_after) AS job FROM uploads JOIN users ON users.id = uploads.user_id JOIN jobs ON jobs.upload_id = uploads.id
                """)
        }
        let columns: [String?] = ["user", "upload", "completed", "job"].map { types?[$0] }
        #expect(columns == ["real", "real", "real", "real"])
        // The expiry query compares numbers: an upload past its expiry is found.
        let uploads = SQLiteUploadRepository(pool: db.pool)
        let user = try #require(try await SQLiteUserRepository(pool: db.pool).create(username: "late", passwordHash: "x"))
        let then = Date().addingTimeInterval(-120)
        _ = try await uploads.create(UploadRecord(id: "old", userId: user.id, length: 1, offset: 0, metadata: nil, createdAt: then,
                                                  expiresAt: then.addingTimeInterval(60)), quota: nil, maxOpen: nil)
        #expect(try await uploads.expired(at: Date()) == ["old"])
    }
}
