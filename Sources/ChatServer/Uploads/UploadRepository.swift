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
}

/// Upload state, stored so that a restarted server resumes where the disk says.
protocol UploadRepository: Sendable {
    func create(_ record: UploadRecord) async throws
    func upload(id: String) async throws -> UploadRecord?
    /// Records that the bytes up to `offset` are on disk, and the length if it was deferred.
    func advance(id: String, to offset: Int64, length: Int64?, completedAt: Date?) async throws
    func delete(id: String) async throws
    /// Unfinished uploads whose expiry has passed.
    func expired(at now: Date) async throws -> [String]
    /// Completed uploads the pipeline has not turned into files yet (e.g. after a restart).
    func unprocessed() async throws -> [String]
    func setFile(uploadId: String, fileId: String) async throws
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
    }

    func create(_ record: UploadRecord) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO uploads (id, user_id, length, "offset", metadata, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [record.id, record.userId, record.length, record.offset, record.metadata,
                                 record.createdAt.timeIntervalSince1970, record.expiresAt.timeIntervalSince1970])
        }
    }

    func upload(id: String) async throws -> UploadRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM uploads WHERE id = ?", arguments: [id]).map { row in
                UploadRecord(id: row["id"], userId: row["user_id"], length: row["length"], offset: row["offset"],
                             metadata: row["metadata"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                             expiresAt: Date(timeIntervalSince1970: row["expires_at"]),
                             completedAt: (row["completed_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                             fileId: row["file_id"])
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
            try String.fetchAll(db, sql: "SELECT id FROM uploads WHERE completed_at IS NOT NULL AND file_id IS NULL")
        }
    }

    func setFile(uploadId: String, fileId: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE uploads SET file_id = ? WHERE id = ?", arguments: [fileId, uploadId])
        }
    }

    func expired(at now: Date) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM uploads WHERE completed_at IS NULL AND expires_at <= ?",
                                arguments: [now.timeIntervalSince1970])
        }
    }
}
