import Foundation
import Logging
import MediagateCore
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// A PostgreSQL database shared by every node: a connection pool (`PostgresClient`), migrated on
/// start. Times are stored as seconds since 1970 (`DOUBLE PRECISION`), as in the SQLite backend,
/// so both backends compare and order them the same way.
package final class PostgresDatabase: Sendable {
    package let client: PostgresClient
    package let logger: Logger
    private let running: Task<Void, Never>
    private let closed = Atomic<Bool>(false)

    /// Whether ``shutdown()`` was called: long-lived users (the listener) stop reconnecting.
    package var isShutDown: Bool { closed.load(ordering: .acquiring) }

    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`, or with
    /// `?host=/directory` for a Unix socket), with at most `maxConnections`, and migrates.
    package init(url: String, maxConnections: Int, logger: Logger) async throws {
        var configuration = try Self.configuration(url: url)
        configuration.options.maximumConnections = maxConnections
        configuration.options.minimumConnections = 0
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        running = Task { await client.run() }
        do {
            try await migrate()
        } catch {
            running.cancel()
            throw error
        }
    }

    deinit { running.cancel() }

    /// Stops the pool (its connections close).
    package func shutdown() {
        closed.store(true, ordering: .releasing)
        running.cancel()
    }

    static func configuration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme),
              let user = components.user, !user.isEmpty else {
            throw PostgresURLError(url: url)
        }
        let database = components.path.split(separator: "/").first.map(String.init)
        let password = components.password?.removingPercentEncoding
        if let socketDirectory = components.queryItems?.first(where: { $0.name == "host" })?.value, socketDirectory.hasPrefix("/") {
            let port = components.port ?? 5432
            return PostgresClient.Configuration(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user,
                                                password: password, database: database)
        }
        guard let host = components.host, !host.isEmpty else { throw PostgresURLError(url: url) }
        return PostgresClient.Configuration(host: host, port: components.port ?? 5432, username: user, password: password,
                                            database: database, tls: .disable)
    }

    /// Runs the migrations not yet run, one transaction each, under an advisory lock so that
    /// nodes starting together migrate once.
    private func migrate() async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7201)", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)",
                                       logger: logger)
            var done = Set<String>()
            for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(String.self) {
                done.insert(version)
            }
            for (version, statements) in PostgresSchema.migrations where !done.contains(version) {
                for statement in statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                let now = Date().timeIntervalSince1970
                try await connection.query("INSERT INTO schema_migrations (version, applied_at) VALUES (\(version), \(now))", logger: logger)
            }
        }
    }
}

package struct PostgresURLError: Error, CustomStringConvertible {
    var url: String
    package var description: String { "the database URL is not postgres://user[:password]@host[:port]/database: \(url)" }
}

/// Every migration of this backend, in order.
enum PostgresSchema {
    static let migrations: [(String, [String])] = [
        ("v1: the whole schema (the SQLite backend's v1-v8)", [
            """
            CREATE TABLE users (
                id BIGSERIAL PRIMARY KEY,
                username TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            // Names are unique ignoring case, as SQLite's COLLATE NOCASE keeps them.
            "CREATE UNIQUE INDEX users_username ON users (lower(username))",
            """
            CREATE TABLE refresh_tokens (
                token_hash TEXT PRIMARY KEY,
                user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                family TEXT NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                used_at DOUBLE PRECISION,
                revoked_at DOUBLE PRECISION,
                successor_sealed BYTEA
            )
            """,
            "CREATE INDEX refresh_tokens_family ON refresh_tokens (family)",
            """
            CREATE TABLE rooms (
                id BIGSERIAL PRIMARY KEY,
                name TEXT NOT NULL,
                is_private BOOLEAN NOT NULL DEFAULT false,
                created_by BIGINT NOT NULL REFERENCES users(id),
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE room_members (
                room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                joined_at DOUBLE PRECISION NOT NULL,
                last_read_message_id BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (room_id, user_id)
            )
            """,
            "CREATE INDEX room_members_user ON room_members (user_id)",
            """
            CREATE TABLE messages (
                id BIGSERIAL PRIMARY KEY,
                room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                sender_id BIGINT NOT NULL REFERENCES users(id),
                content TEXT NOT NULL,
                client_id TEXT,
                attachment TEXT,
                file_id TEXT,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX messages_room ON messages (room_id, id)",
            "CREATE UNIQUE INDEX messages_client_id ON messages (sender_id, room_id, client_id) WHERE client_id IS NOT NULL",
            "CREATE INDEX messages_file ON messages (file_id) WHERE file_id IS NOT NULL",
            """
            CREATE TABLE reactions (
                id BIGSERIAL PRIMARY KEY,
                message_id BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                reaction_type TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                UNIQUE (message_id, user_id)
            )
            """,
            """
            CREATE TABLE uploads (
                id TEXT PRIMARY KEY,
                user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                length BIGINT,
                "offset" BIGINT NOT NULL DEFAULT 0,
                metadata TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                completed_at DOUBLE PRECISION,
                file_id TEXT,
                rejection TEXT
            )
            """,
            "CREATE INDEX uploads_expiry ON uploads (expires_at) WHERE completed_at IS NULL",
            "CREATE INDEX uploads_user ON uploads (user_id)",
            """
            CREATE TABLE files (
                id TEXT PRIMARY KEY,
                public_name TEXT UNIQUE,
                upload_id TEXT UNIQUE,
                owner_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                sha256 TEXT NOT NULL,
                size BIGINT NOT NULL,
                attachment TEXT NOT NULL,
                error_code TEXT,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX files_sha256 ON files (sha256)",
            "CREATE INDEX files_owner ON files (owner_id)",
            """
            CREATE TABLE jobs (
                id BIGSERIAL PRIMARY KEY,
                upload_id TEXT NOT NULL UNIQUE,
                content_sha256 TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                run_after DOUBLE PRECISION NOT NULL,
                leased_until DOUBLE PRECISION,
                leased_by TEXT,
                last_error TEXT
            )
            """,
            "CREATE INDEX jobs_due ON jobs (run_after)",
            // Keys every node signs with (tokens, URLs): shared, so any node accepts another's.
            """
            CREATE TABLE signing_keys (
                name TEXT PRIMARY KEY,
                key BYTEA NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
        ]),
        ("v2: messages announce themselves to every node", [
            // In the insert's transaction: delivered on commit, never for a rolled-back insert.
            """
            CREATE FUNCTION announce_message() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('mediagate_room_events',
                                  json_build_object('k', 'message', 'room', NEW.room_id, 'id', NEW.id, 'user', NEW.sender_id)::text);
                RETURN NULL;
            END $$
            """,
            "CREATE TRIGGER messages_announce AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION announce_message()",
        ]),
        ("v3: a fence for each upload's writer, and its store's state (SQLite's v9)", [
            // Raised by each new writer; an offset is stored only under the fence it was
            // written under, so a writer another node took the upload from can never store one.
            "ALTER TABLE uploads ADD COLUMN writer_fence BIGINT NOT NULL DEFAULT 0",
            // What the upload store needs to find the stored offset's bytes (S3: parts' ETags).
            "ALTER TABLE uploads ADD COLUMN store_state TEXT",
        ]),
        ("v4: where a resumable request's body goes once complete (SQLite's v10)", [
            "ALTER TABLE uploads ADD COLUMN handoff TEXT",
        ]),
    ]
}
