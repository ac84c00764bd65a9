import Foundation
import Logging
import MediagateCore
import MediagateWire
import PostgresNIO

private extension Date {
    var seconds: Double { timeIntervalSince1970 }
}

package struct PostgresUploadRepository: UploadRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    private static let columns = #"id, user_id, length, "offset", metadata, created_at, expires_at, completed_at, file_id, rejection, store_state, handoff"#

    package func create(_ record: UploadRecord, quota: Int64?, maxOpen: Int?) async throws -> UploadCreation {
        let logger = db.logger
        return try await db.client.withTransaction(logger: logger) { connection -> UploadCreation in
            // The user's row locked: creations by one user, from any node, check and insert one
            // at a time, so parallel creations cannot all pass the quota and overrun together.
            try await connection.query("SELECT id FROM users WHERE id = \(record.userId) FOR UPDATE", logger: logger)
            if let quota, let length = record.length,
               try await Self.bytesInUse(connection, userId: record.userId, at: record.createdAt, logger: logger) + length > quota {
                return .overQuota
            }
            if let maxOpen {
                var open: Int64 = 0
                for try await count in try await connection.query("""
                    SELECT COUNT(*) FROM uploads WHERE user_id = \(record.userId) AND completed_at IS NULL AND expires_at > \(record.createdAt.seconds)
                    """, logger: logger).decode(Int64.self) { open = count }
                if open >= maxOpen { return .tooManyOpen }
            }
            try await connection.query("""
                INSERT INTO uploads (id, user_id, length, "offset", metadata, created_at, expires_at, handoff)
                VALUES (\(record.id), \(record.userId), \(record.length), \(record.offset), \(record.metadata),
                        \(record.createdAt.seconds), \(record.expiresAt.seconds), \(record.handoff?.json))
                """, logger: logger)
            return .created
        }
    }

    package func upload(id: String) async throws -> UploadRecord? {
        let rows = try await db.client.query("SELECT \(unescaped: Self.columns) FROM uploads WHERE id = \(id)", logger: db.logger)
        for try await (id, user, length, offset, metadata, created, expires, completed, fileId, rejection, storeState, handoff)
            in rows.decode((String, Int64, Int64?, Int64, String?, Double, Double, Double?, String?, String?, String?, String?).self) {
            return UploadRecord(id: id, userId: user, length: length, offset: offset, metadata: metadata,
                                createdAt: Date(timeIntervalSince1970: created), expiresAt: Date(timeIntervalSince1970: expires),
                                completedAt: completed.map(Date.init(timeIntervalSince1970:)), fileId: fileId, rejection: rejection,
                                storeState: storeState, handoff: UploadHandoff(json: handoff))
        }
        return nil
    }

    package func advance(id: String, to offset: Int64, length: Int64?, completedAt: Date?, processing: ProcessingJob?,
                         storeState: String?, ifWriter fence: Int64?) async throws -> Bool {
        let logger = db.logger
        return try await db.client.withTransaction(logger: logger) { connection in
            let rows = try await connection.query("""
                UPDATE uploads SET "offset" = \(offset), length = COALESCE(length, \(length)), completed_at = \(completedAt?.seconds),
                                   store_state = COALESCE(\(storeState), store_state)
                WHERE id = \(id) AND (\(fence)::BIGINT IS NULL OR writer_fence = \(fence)) RETURNING id
                """, logger: logger)
            var updated = false
            for try await _ in rows.decode(String.self) { updated = true }
            guard updated else { return false }
            if let processing {
                try await PostgresJobQueue.enqueue(connection, processing, now: completedAt ?? Date(), logger: logger)
            }
            return true
        }
    }

    package func takeWriter(id: String) async throws -> Int64? {
        let rows = try await db.client.query("UPDATE uploads SET writer_fence = writer_fence + 1 WHERE id = \(id) RETURNING writer_fence",
                                             logger: db.logger)
        for try await fence in rows.decode(Int64.self) { return fence }
        return nil
    }

    package func writerFence(id: String) async throws -> Int64? {
        let rows = try await db.client.query("SELECT writer_fence FROM uploads WHERE id = \(id)", logger: db.logger)
        for try await fence in rows.decode(Int64.self) { return fence }
        return nil
    }

    package func delete(id: String) async throws {
        try await db.client.query("DELETE FROM uploads WHERE id = \(id)", logger: db.logger)
    }

    package func expired(at now: Date) async throws -> [String] {
        let rows = try await db.client.query("SELECT id FROM uploads WHERE completed_at IS NULL AND expires_at <= \(now.seconds)",
                                             logger: db.logger)
        var ids: [String] = []
        for try await id in rows.decode(String.self) { ids.append(id) }
        return ids
    }

    package func setFile(uploadId: String, fileId: String) async throws {
        try await db.client.query("UPDATE uploads SET file_id = \(fileId) WHERE id = \(uploadId)", logger: db.logger)
    }

    package func reject(uploadId: String, code: String) async throws {
        try await db.client.query("UPDATE uploads SET rejection = \(code) WHERE id = \(uploadId)", logger: db.logger)
    }

    package func bytesInUse(userId: Int64, at now: Date) async throws -> Int64 {
        let logger = db.logger
        return try await db.client.withConnection { connection in
            try await Self.bytesInUse(connection, userId: userId, at: now, logger: logger)
        }
    }

    private static func bytesInUse(_ connection: PostgresConnection, userId: Int64, at now: Date, logger: Logger) async throws -> Int64 {
        let rows = try await connection.query("""
            SELECT ((SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = \(userId))
                 + (SELECT COALESCE(SUM(COALESCE(length, "offset")), 0) FROM uploads
                    WHERE user_id = \(userId) AND file_id IS NULL AND rejection IS NULL
                      AND (completed_at IS NOT NULL OR expires_at > \(now.seconds))))::BIGINT
            """, logger: logger)
        for try await total in rows.decode(Int64.self) { return total }
        return 0
    }
}

package struct PostgresFileRepository: FileRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    package func insert(_ file: StoredFile, createdAt: Date) async throws {
        let attachment = String(decoding: try JSONEncoder().encode(file.attachment), as: UTF8.self)
        try await db.client.query("""
            INSERT INTO files (id, public_name, upload_id, owner_id, sha256, size, attachment, error_code, created_at)
            VALUES (\(file.id), \(file.publicName), \(file.uploadId), \(file.ownerId), \(file.sha256), \(file.size), \(attachment),
                    \(file.errorCode), \(createdAt.seconds))
            """, logger: db.logger)
    }

    private func file(where column: String, _ value: String) async throws -> StoredFile? {
        let rows = try await db.client.query("""
            SELECT id, public_name, upload_id, owner_id, sha256, size, attachment, error_code FROM files WHERE \(unescaped: column) = \(value)
            """, logger: db.logger)
        for try await (id, publicName, uploadId, owner, sha256, size, attachment, errorCode)
            in rows.decode((String, String?, String?, Int64, String, Int64, String, String?).self) {
            return StoredFile(id: id, publicName: publicName, uploadId: uploadId, ownerId: owner, sha256: sha256, size: size,
                              attachment: try JSONDecoder().decode(Attachment.self, from: Data(attachment.utf8)), errorCode: errorCode)
        }
        return nil
    }

    package func file(id: String) async throws -> StoredFile? { try await file(where: "id", id) }

    package func file(publicName: String) async throws -> StoredFile? { try await file(where: "public_name", publicName) }

    package func canRead(fileId: String, userId: Int64) async throws -> Bool {
        let rows = try await db.client.query("""
            SELECT EXISTS (SELECT 1 FROM files WHERE id = \(fileId) AND owner_id = \(userId))
                OR EXISTS (SELECT 1 FROM messages JOIN room_members ON room_members.room_id = messages.room_id
                           WHERE messages.file_id = \(fileId) AND room_members.user_id = \(userId))
            """, logger: db.logger)
        for try await readable in rows.decode(Bool.self) { return readable }
        return false
    }

    package func allSHA256() async throws -> Set<String> {
        var hashes = Set<String>()
        for try await hash in try await db.client.query("SELECT DISTINCT sha256 FROM files", logger: db.logger).decode(String.self) {
            hashes.insert(hash)
        }
        return hashes
    }
}

/// The processing queue on PostgreSQL: workers on every node claim with `FOR UPDATE SKIP
/// LOCKED`, so two nodes never take the same job and neither waits for the other's lock.
package struct PostgresJobQueue: JobQueue {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    static func enqueue(_ connection: PostgresConnection, _ job: ProcessingJob, now: Date, logger: Logger) async throws {
        try await connection.query("""
            INSERT INTO jobs (upload_id, content_sha256, run_after) VALUES (\(job.uploadId), \(job.contentSHA256), \(now.seconds))
            ON CONFLICT (upload_id) DO NOTHING
            """, logger: logger)
    }

    package func enqueue(_ job: ProcessingJob, now: Date) async throws {
        let logger = db.logger
        try await db.client.withConnection { connection in try await Self.enqueue(connection, job, now: now, logger: logger) }
    }

    package func claim(owner: String, lease: TimeInterval, now: Date) async throws -> LeasedJob? {
        let rows = try await db.client.query("""
            UPDATE jobs SET attempts = attempts + 1, leased_until = \(now.seconds + lease), leased_by = \(owner)
            WHERE id = (SELECT id FROM jobs WHERE run_after <= \(now.seconds) AND (leased_until IS NULL OR leased_until <= \(now.seconds))
                        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id, upload_id, content_sha256, attempts
            """, logger: db.logger)
        for try await (id, upload, sha256, attempts) in rows.decode((Int64, String, String?, Int32).self) {
            return LeasedJob(id: id, job: ProcessingJob(uploadId: upload, contentSHA256: sha256), attempts: Int(attempts))
        }
        return nil
    }

    package func complete(_ id: Int64) async throws {
        try await db.client.query("DELETE FROM jobs WHERE id = \(id)", logger: db.logger)
    }

    package func retry(_ id: Int64, at retryAt: Date, error: String) async throws {
        try await db.client.query("""
            UPDATE jobs SET run_after = \(retryAt.seconds), leased_until = NULL, leased_by = NULL, last_error = \(String(error.prefix(1000)))
            WHERE id = \(id)
            """, logger: db.logger)
    }

    package func depth(now: Date) async throws -> (queued: Int, running: Int) {
        let rows = try await db.client.query("""
            SELECT COUNT(*) FILTER (WHERE leased_until IS NULL OR leased_until <= \(now.seconds)),
                   COUNT(*) FILTER (WHERE leased_until > \(now.seconds)) FROM jobs
            """, logger: db.logger)
        for try await (queued, running) in rows.decode((Int64, Int64).self) { return (Int(queued), Int(running)) }
        return (0, 0)
    }
}

/// Signing keys in the shared database: the first node to need a key makes it, every other
/// node reads the same one, so a token or URL signed by any node verifies on all.
package struct PostgresSigningKeys: SigningKeyRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    package func key(named name: String) async throws -> Data {
        let candidate = Self.newKey()
        try await db.client.query("""
            INSERT INTO signing_keys (name, key, created_at) VALUES (\(name), \(candidate), \(Date().seconds)) ON CONFLICT (name) DO NOTHING
            """, logger: db.logger)
        guard let key = try await existingKey(named: name) else { throw PostgresRaceError() }
        return key
    }

    package func existingKey(named name: String) async throws -> Data? {
        for try await key in try await db.client.query("SELECT key FROM signing_keys WHERE name = \(name)", logger: db.logger).decode(Data.self) {
            return key
        }
        return nil
    }
}
