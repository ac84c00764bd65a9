import Foundation
import GRDB
import MediagateCore

/// The SQLite database in the data directory: opened in WAL mode, migrated on start. Every
/// migration of this backend is in ``migrator``, in order.
package struct SQLiteDatabase: Sendable {
    package let pool: DatabasePool

    /// Opens (creating if needed) `chat.sqlite` in `directory` and runs the migrations.
    package init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(5)
        pool = try DatabasePool(path: (directory as NSString).appendingPathComponent("chat.sqlite"), configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    package static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: users, tokens, rooms, messages") { db in
            try db.execute(sql: """
                CREATE TABLE users (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
                    password_hash TEXT NOT NULL,
                    created_at REAL NOT NULL
                );
                -- Refresh tokens are stored as SHA-256 hashes; a family is one login's chain of
                -- rotations, revoked whole when a spent token is presented again.
                CREATE TABLE refresh_tokens (
                    token_hash TEXT PRIMARY KEY,
                    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    family TEXT NOT NULL,
                    expires_at REAL NOT NULL,
                    used_at REAL,
                    revoked_at REAL
                );
                CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
                CREATE TABLE rooms (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL,
                    is_private INTEGER NOT NULL DEFAULT 0,
                    created_by INTEGER NOT NULL REFERENCES users(id),
                    created_at REAL NOT NULL
                );
                CREATE TABLE room_members (
                    room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    joined_at REAL NOT NULL,
                    last_read_message_id INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (room_id, user_id)
                );
                CREATE INDEX room_members_user ON room_members(user_id);
                CREATE TABLE messages (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                    sender_id INTEGER NOT NULL REFERENCES users(id),
                    content TEXT NOT NULL,
                    client_id TEXT,
                    attachment TEXT,
                    created_at REAL NOT NULL
                );
                CREATE INDEX messages_room ON messages(room_id, id);
                -- A resend with the same client_id is the same message.
                CREATE UNIQUE INDEX messages_client_id ON messages(sender_id, client_id) WHERE client_id IS NOT NULL;
                """)
        }
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
        migrator.registerMigration("v6: the seed app's contract: reactions, refresh grace, capability names") { db in
            try db.execute(sql: """
                -- One reaction per user and message; another emoji replaces it.
                CREATE TABLE reactions (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    reaction_type TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL,
                    UNIQUE (message_id, user_id)
                );
                -- A spent refresh token keeps its successor, sealed with a key only the spent
                -- token derives, so a replay within the grace window gets the same successor.
                ALTER TABLE refresh_tokens ADD COLUMN successor_sealed BLOB;
                -- The file's capability name, <random>.<ext>: readable without a header by
                -- whoever holds it, as the seed app and article load files.
                ALTER TABLE files ADD COLUMN public_name TEXT;
                CREATE UNIQUE INDEX files_public_name ON files(public_name) WHERE public_name IS NOT NULL;
                """)
        }
        migrator.registerMigration("v7: a client_id names a message within its sender's room") { db in
            try db.execute(sql: """
                -- Replayed into another room, a client_id returned the first room's message
                -- (with a fresh signed URL to its file): the key is the sender *and* the room.
                DROP INDEX messages_client_id;
                CREATE UNIQUE INDEX messages_client_id ON messages(sender_id, room_id, client_id) WHERE client_id IS NOT NULL;
                """)
        }
        migrator.registerMigration("v8: a durable processing queue") { db in
            try db.execute(sql: """
                -- One job per completed upload, leased by one worker at a time; a worker that
                -- dies leaves its job to be taken again when the lease ends.
                CREATE TABLE jobs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    upload_id TEXT NOT NULL UNIQUE,
                    content_sha256 TEXT,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    run_after REAL NOT NULL,
                    leased_until REAL,
                    leased_by TEXT,
                    last_error TEXT
                );
                CREATE INDEX jobs_due ON jobs(run_after);
                -- Uploads that completed before the queue existed (and were never processed).
                INSERT INTO jobs (upload_id, run_after)
                    SELECT id, 0 FROM uploads WHERE completed_at IS NOT NULL AND file_id IS NULL AND rejection IS NULL;
                """)
        }
        migrator.registerMigration("v9: a fence for each upload's writer, and its store's state") { db in
            // Raised by each new writer; an offset is stored only under the fence it was
            // written under, so a writer another node took the upload from can never store one.
            try db.execute(sql: "ALTER TABLE uploads ADD COLUMN writer_fence INTEGER NOT NULL DEFAULT 0")
            // What the upload store needs to find the stored offset's bytes (S3: parts' ETags).
            try db.execute(sql: "ALTER TABLE uploads ADD COLUMN store_state TEXT")
        }
        migrator.registerMigration("v10: where a resumable request's body goes once complete") { db in
            try db.execute(sql: "ALTER TABLE uploads ADD COLUMN handoff TEXT")
        }
        return migrator
    }
}
