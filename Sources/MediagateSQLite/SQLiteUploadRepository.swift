import Foundation
import GRDB
import MediagateCore

package struct SQLiteUploadRepository: UploadRepository {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    package func create(_ record: UploadRecord, quota: Int64?, maxOpen: Int?) async throws -> UploadCreation {
        try await pool.write { db in
            // One write transaction: SQLite runs them one at a time, so the sums read here are
            // the ones the insert is checked against.
            if let quota, let length = record.length,
               try Self.bytesInUse(db, userId: record.userId, at: record.createdAt) + length > quota {
                return .overQuota
            }
            if let maxOpen, try Int.fetchOne(db, sql: """
                SELECT COUNT(*) FROM uploads WHERE user_id = ? AND completed_at IS NULL AND expires_at > ?
                """, arguments: [record.userId, record.createdAt.timeIntervalSince1970]) ?? 0 >= maxOpen {
                return .tooManyOpen
            }
            var row = UploadRow(record)
            try row.insert(db)
            return .created
        }
    }

    package func upload(id: String) async throws -> UploadRecord? {
        try await pool.read { db in try UploadRow.fetchOne(db, key: id)?.record }
    }

    package func advance(id: String, to offset: Int64, length: Int64?, completedAt: Date?, processing: ProcessingJob?,
                         storeState: String?, ifWriter fence: Int64?) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE uploads SET "offset" = ?, length = COALESCE(length, ?), completed_at = ?, store_state = COALESCE(?, store_state)
                WHERE id = ? AND (? IS NULL OR writer_fence = ?)
                """, arguments: [offset, length, completedAt?.timeIntervalSince1970, storeState, id, fence, fence])
            guard db.changesCount > 0 else { return false }
            if let processing { try SQLiteJobQueue.enqueue(db, processing, now: completedAt ?? Date()) }
            return true
        }
    }

    package func takeWriter(id: String) async throws -> Int64? {
        try await pool.write { db in
            try Int64.fetchOne(db, sql: "UPDATE uploads SET writer_fence = writer_fence + 1 WHERE id = ? RETURNING writer_fence", arguments: [id])
        }
    }

    package func writerFence(id: String) async throws -> Int64? {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT writer_fence FROM uploads WHERE id = ?", arguments: [id]) }
    }

    package func delete(id: String) async throws {
        try await pool.write { db in _ = try UploadRow.deleteOne(db, key: id) }
    }

    package func setFile(uploadId: String, fileId: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE uploads SET file_id = ? WHERE id = ?", arguments: [fileId, uploadId])
        }
    }

    package func reject(uploadId: String, code: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE uploads SET rejection = ? WHERE id = ?", arguments: [code, uploadId])
        }
    }

    package func bytesInUse(userId: Int64, at now: Date) async throws -> Int64 {
        try await pool.read { db in try Self.bytesInUse(db, userId: userId, at: now) }
    }

    private static func bytesInUse(_ db: Database, userId: Int64, at now: Date) throws -> Int64 {
        try Int64.fetchOne(db, sql: """
            SELECT (SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = ?)
                 + (SELECT COALESCE(SUM(COALESCE(length, "offset")), 0) FROM uploads
                    WHERE user_id = ? AND file_id IS NULL AND rejection IS NULL
                      AND (completed_at IS NOT NULL OR expires_at > ?))
            """, arguments: [userId, userId, now.timeIntervalSince1970]) ?? 0
    }

    package func expired(at now: Date) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM uploads WHERE completed_at IS NULL AND expires_at <= ?",
                                arguments: [now.timeIntervalSince1970])
        }
    }
}

package struct SQLiteFileRepository: FileRepository {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    package func insert(_ file: StoredFile, createdAt: Date) async throws {
        try await pool.write { db in
            var record = FileRecord(file, createdAt: createdAt)
            try record.insert(db)
        }
    }

    package func file(id: String) async throws -> StoredFile? {
        try await pool.read { db in try FileRecord.fetchOne(db, key: id)?.file }
    }

    package func file(publicName: String) async throws -> StoredFile? {
        try await pool.read { db in try FileRecord.filter(Column("public_name") == publicName).fetchOne(db)?.file }
    }

    package func canRead(fileId: String, userId: Int64) async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM files WHERE id = ? AND owner_id = ?)
                    OR EXISTS (SELECT 1 FROM messages JOIN room_members ON room_members.room_id = messages.room_id
                               WHERE messages.file_id = ? AND room_members.user_id = ?)
                """, arguments: [fileId, userId, fileId, userId]) ?? false
        }
    }

    package func allSHA256() async throws -> Set<String> {
        Set(try await pool.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT sha256 FROM files") })
    }
}

/// The processing queue as a table. SQLite runs one write transaction at a time, so a claim
/// (find a due job, lease it) cannot race another; PostgreSQL will use `FOR UPDATE SKIP LOCKED`.
package struct SQLiteJobQueue: JobQueue {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    static func enqueue(_ db: Database, _ job: ProcessingJob, now: Date) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO jobs (upload_id, content_sha256, run_after) VALUES (?, ?, ?)",
                       arguments: [job.uploadId, job.contentSHA256, now.timeIntervalSince1970])
    }

    package func enqueue(_ job: ProcessingJob, now: Date) async throws {
        try await pool.write { db in try Self.enqueue(db, job, now: now) }
    }

    package func claim(owner: String, lease: TimeInterval, now: Date) async throws -> LeasedJob? {
        let seconds = now.timeIntervalSince1970
        // Most polls find nothing: a read first keeps them off the single writer.
        let due = try await pool.read { db in
            try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM jobs WHERE run_after <= ? AND (leased_until IS NULL OR leased_until <= ?))
                """, arguments: [seconds, seconds]) ?? false
        }
        guard due else { return nil }
        return try await pool.write { db in
            guard var job = try JobRecord.fetchOne(db, sql: """
                SELECT * FROM jobs WHERE run_after <= ? AND (leased_until IS NULL OR leased_until <= ?) ORDER BY id LIMIT 1
                """, arguments: [seconds, seconds]) else { return nil }
            job.attempts += 1
            job.leasedUntil = now.addingTimeInterval(lease)
            job.leasedBy = owner
            try job.update(db)
            return LeasedJob(id: job.id ?? 0, job: ProcessingJob(uploadId: job.uploadId, contentSHA256: job.contentSha256),
                             attempts: job.attempts)
        }
    }

    package func complete(_ id: Int64) async throws {
        try await pool.write { db in _ = try JobRecord.deleteOne(db, key: id) }
    }

    package func retry(_ id: Int64, at retryAt: Date, error: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE jobs SET run_after = ?, leased_until = NULL, leased_by = NULL, last_error = ? WHERE id = ?",
                           arguments: [retryAt.timeIntervalSince1970, String(error.prefix(1000)), id])
        }
    }

    package func depth(now: Date) async throws -> (queued: Int, running: Int) {
        try await pool.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COUNT(*) FILTER (WHERE leased_until IS NULL OR leased_until <= ?) AS queued,
                       COUNT(*) FILTER (WHERE leased_until > ?) AS running FROM jobs
                """, arguments: [now.timeIntervalSince1970, now.timeIntervalSince1970])
            return (row?["queued"] ?? 0, row?["running"] ?? 0)
        }
    }
}
