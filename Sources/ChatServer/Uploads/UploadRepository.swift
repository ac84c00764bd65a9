import Foundation
import GRDB

/// A resumable upload's state. Its bytes live in `uploads/<id>` in the data directory;
/// `offset` counts only bytes that were on disk (fsynced) when it was stored.
struct UploadRecord: Sendable, Equatable {
    var id: String
    var userId: Int64
    /// nil while the length is deferred (creation-defer-length).
    var length: Int64?
    var offset: Int64
    /// The client's `Upload-Metadata` header, verbatim, echoed by HEAD.
    var metadata: String?
    var createdAt: Date
    var expiresAt: Date
    var completedAt: Date?
    /// The stored file, once the pipeline has processed the completed upload.
    var fileId: String? = nil
    /// Why a completed upload was not stored (`forbidden_type`); nil otherwise.
    var rejection: String? = nil
}

/// What a creation came to.
enum UploadCreation: Sendable {
    case created, overQuota, tooManyOpen
}

/// Upload state, stored so that a restarted server resumes where the disk says.
protocol UploadRepository: Sendable {
    /// Stores a new upload if its declared length fits what `quota` leaves its user and the
    /// user has fewer than `maxOpen` unfinished uploads, both counted in the same transaction:
    /// parallel creations cannot all pass one check and overrun together. nil: no such limit.
    func create(_ record: UploadRecord, quota: Int64?, maxOpen: Int?) async throws -> UploadCreation
    func upload(id: String) async throws -> UploadRecord?
    /// Records that the bytes up to `offset` are on disk, and the length if it was deferred.
    func advance(id: String, to offset: Int64, length: Int64?, completedAt: Date?) async throws
    func delete(id: String) async throws
    /// Unfinished uploads whose expiry has passed.
    func expired(at now: Date) async throws -> [String]
    /// Completed uploads the pipeline has not turned into files yet (e.g. after a restart).
    func unprocessed() async throws -> [String]
    func setFile(uploadId: String, fileId: String) async throws
    /// Marks a completed upload as refused by policy; its bytes are gone.
    func reject(uploadId: String, code: String) async throws
    /// Bytes `userId` holds against their quota: stored files, plus the declared (or, when
    /// deferred, received) lengths of uploads not yet stored that have not expired.
    func bytesInUse(userId: Int64, at now: Date) async throws -> Int64
}

struct SQLiteUploadRepository: UploadRepository {
    let pool: DatabasePool

    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2: tus uploads") { db in
            try db.execute(sql: """
                CREATE TABLE uploads (
                    id TEXT PRIMARY KEY,
                    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    length INTEGER,
                    "offset" INTEGER NOT NULL DEFAULT 0,
                    metadata TEXT,
                    created_at REAL NOT NULL,
                    expires_at REAL NOT NULL,
                    completed_at REAL
                );
                CREATE INDEX uploads_expiry ON uploads(expires_at) WHERE completed_at IS NULL;
                """)
        }
        migrator.registerMigration("v3: stored files") { db in
            try db.execute(sql: """
                ALTER TABLE uploads ADD COLUMN file_id TEXT;
                -- One row per stored upload; identical bytes share one blob, files/<sha256>.
                CREATE TABLE files (
                    id TEXT PRIMARY KEY,
                    upload_id TEXT UNIQUE,
                    owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    sha256 TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    attachment TEXT NOT NULL,
                    error_code TEXT,
                    created_at REAL NOT NULL
                );
                CREATE INDEX files_sha256 ON files(sha256);
                """)
        }
        migrator.registerMigration("v4: files in messages") { db in
            try db.execute(sql: """
                ALTER TABLE messages ADD COLUMN file_id TEXT;
                CREATE INDEX messages_file ON messages(file_id) WHERE file_id IS NOT NULL;
                """)
        }
        migrator.registerMigration("v5: refused uploads, quota lookups") { db in
            try db.execute(sql: """
                ALTER TABLE uploads ADD COLUMN rejection TEXT;
                CREATE INDEX uploads_user ON uploads(user_id);
                CREATE INDEX files_owner ON files(owner_id);
                """)
        }
    }

    func create(_ record: UploadRecord, quota: Int64?, maxOpen: Int?) async throws -> UploadCreation {
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
            try db.execute(sql: """
                INSERT INTO uploads (id, user_id, length, "offset", metadata, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [record.id, record.userId, record.length, record.offset, record.metadata,
                                 record.createdAt.timeIntervalSince1970, record.expiresAt.timeIntervalSince1970])
            return .created
        }
    }

    func upload(id: String) async throws -> UploadRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM uploads WHERE id = ?", arguments: [id]).map { row in
                UploadRecord(id: row["id"], userId: row["user_id"], length: row["length"], offset: row["offset"],
                             metadata: row["metadata"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                             expiresAt: Date(timeIntervalSince1970: row["expires_at"]),
                             completedAt: (row["completed_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                             fileId: row["file_id"], rejection: row["rejection"])
            }
        }
    }

    func advance(id: String, to offset: Int64, length: Int64?, completedAt: Date?) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE uploads SET "offset" = ?, length = COALESCE(length, ?), completed_at = ? WHERE id = ?
                """, arguments: [offset, length, completedAt?.timeIntervalSince1970, id])
        }
    }

    func delete(id: String) async throws {
        try await pool.write { db in try db.execute(sql: "DELETE FROM uploads WHERE id = ?", arguments: [id]) }
    }

    func unprocessed() async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM uploads WHERE completed_at IS NOT NULL AND file_id IS NULL AND rejection IS NULL")
        }
    }

    func setFile(uploadId: String, fileId: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE uploads SET file_id = ? WHERE id = ?", arguments: [fileId, uploadId])
        }
    }

    func reject(uploadId: String, code: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE uploads SET rejection = ? WHERE id = ?", arguments: [code, uploadId])
        }
    }

    func bytesInUse(userId: Int64, at now: Date) async throws -> Int64 {
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

    func expired(at now: Date) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM uploads WHERE completed_at IS NULL AND expires_at <= ?",
                                arguments: [now.timeIntervalSince1970])
        }
    }
}
