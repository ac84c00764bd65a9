import Foundation
import MediagateCore
import MediagateWire

/// How `mediagate serve` runs. Every value has an embedded default, so the server starts with
/// no configuration at all; a JSON file, environment variables and command-line flags override
/// them, in that order of increasing precedence.
public struct ChatConfiguration: Sendable, Codable, Equatable {
    /// Address to listen on. Loopback by default: exposing the server is a deliberate choice.
    public var host: String = "127.0.0.1"
    /// Port to listen on; 0 picks a free one (tests).
    public var port: Int = 8000
    /// Where the SQLite database and the signing key live.
    public var dataDirectory: String = "mediagate-data"
    /// Whether `POST /api/auth/register` creates accounts.
    public var allowRegistration: Bool = true
    /// Lifetime of an access token (JWT), seconds.
    public var accessTokenSeconds: Int = 15 * 60
    /// Lifetime of a refresh token, seconds.
    public var refreshTokenSeconds: Int = 30 * 24 * 3600
    /// How long a just-spent refresh token still returns the successor it got (parallel
    /// refreshes with one token); presented later, it revokes its login.
    public var refreshReuseGraceSeconds: Int = 30
    /// Longest message text, in characters.
    public var maxMessageLength: Int = 10_000
    /// Most messages one history page returns.
    public var maxHistoryPage: Int = 100
    /// Failed logins allowed in `loginThrottleWindowSeconds`: for one user name from one client
    /// address, for one user name from all addresses together, and from one address.
    public var maxFailedLoginsPerUser: Int = 5
    public var maxFailedLoginsPerUserAllAddresses: Int = 100
    public var maxFailedLoginsPerAddress: Int = 20
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client (exact IPs). The
    /// header is ignored from anyone else: a client could name any address in it.
    public var trustedProxies: [String] = []
    public var loginThrottleWindowSeconds: Int = 300
    /// bcrypt cost. 12 in production; tests lower it to stay fast.
    public var passwordHashCost: Int = 12
    /// Password hashes (logins, registrations) waiting or running at once; past it, 503.
    public var maxPendingPasswordHashes: Int = 64
    /// Frames queued for one WebSocket before the client counts as too slow and is dropped.
    public var maxQueuedFramesPerSocket: Int = 512
    /// WebSockets one user may hold open at once (0: no cap); past it the upgrade answers 429.
    public var maxSocketsPerUser: Int = 32
    /// Seconds a typing indicator lasts without a new `typing_start`.
    public var typingTimeoutSeconds: Int = 6
    /// Largest tus upload (`Tus-Max-Size`), bytes.
    public var maxUploadBytes: Int64 = 1 << 30
    /// Seconds an unfinished upload lives (`Upload-Expires`).
    public var uploadExpirySeconds: Int = 24 * 3600
    /// Seconds between two sweeps for expired uploads.
    public var uploadSweepIntervalSeconds: Int = 300
    /// The shared database, `postgres://user[:password]@host[:port]/name` (or `?host=/dir` for a
    /// Unix socket); several nodes on one database make one chat. Empty: SQLite in the data
    /// directory. (`--database`, `MEDIAGATE_DATABASE`.)
    public var database: String? = nil
    /// Connections each node keeps to the PostgreSQL server at most.
    public var databaseConnections: Int = 20
    /// Where stored files' bytes live: empty for the data directory (`files/`), or an S3
    /// bucket that every node shares, `s3://BUCKET?endpoint=URL&region=REGION&prefix=P`, with
    /// credentials from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. (`--blob-store`,
    /// `MEDIAGATE_BLOB_STORE`.)
    public var blobStore: String? = nil
    /// Bytes of S3 blobs each node keeps on its own disk (`blob-cache/`), least recently used
    /// going first: what the media pipeline and thumbnails read, and what is served from here.
    public var blobCacheBytes: Int64 = 2 << 30
    /// With S3, the size of an upload's parts (at least 5 MiB, S3's floor): what a node holds
    /// on its disk per upload it is receiving, and the most a PATCH cut off mid-part resends.
    public var uploadPartBytes: Int64 = 8 << 20
    /// Whether `GET /metrics` answers any client, not only loopback ones (a Prometheus on
    /// another machine; put it behind your own access control).
    public var metricsFromAnyAddress: Bool = false
    /// How long a node holds a processing job before another may take it (it died, or hangs).
    /// Far longer than any processing takes: the pipeline's own limits end a decode sooner.
    public var processingLeaseSeconds: Int = 300
    /// Largest file `POST /api/upload-file` takes (the seed article's 10 MB).
    public var maxMultipartBytes: Int = 10 * 1024 * 1024
    /// Seconds a signed file URL stays valid.
    public var signedURLSeconds: Int = 24 * 3600
    /// Whether `GET /api/files/{name}` serves a file by its capability name (the upload's
    /// `filename`, `<random>.<ext>`) without a header or signature, as the seed app and article
    /// load files. Off: only signed URLs and Bearer tokens read files (see Docs/API.md).
    public var capabilityURLs: Bool = true
    /// Unfinished tus uploads one user may hold at once (0: any number); past it, 429.
    public var maxOpenUploadsPerUser: Int = 100
    /// Free bytes kept on the data directory's file system: an upload that would go below it is
    /// refused with 507 (0: no floor).
    public var minFreeDiskBytes: Int64 = 1 << 30
    /// Bytes one user may keep: stored files plus unfinished uploads' declared lengths. 0: no quota.
    public var userQuotaBytes: Int64 = 20 << 30
    /// Sniffed MIME types the server refuses to store (`family/*` covers a family). By default
    /// native executables and installers: chat is no place to hand those around.
    public var forbiddenMimeTypes: [String] = UploadDefaults.forbiddenMimeTypes
    /// Whether stored pictures lose where they were taken (EXIF GPS, XMP location) on the way
    /// in, in place and losslessly (`LocationMetadata`). Uploads are shared with rooms; a
    /// phone's photo would otherwise give away its owner's home to everyone who can read it.
    public var stripLocation: Bool = true
    /// Bytes of recently used thumbnails kept in memory (0: serve every one from disk).
    public var thumbnailMemoryCacheBytes: Int = 32 << 20
    /// Whether a tus PATCH is `fdatasync`ed before its offset is acknowledged. Turning it off
    /// trades crash safety (acknowledged bytes may be lost on power failure or kernel crash,
    /// not on a server crash) for throughput on slow disks, as nginx and tuspyserver run.
    public var durableUploads: Bool = true
    /// Seconds the media pipeline may spend decoding one file.
    public var mediaTimeLimitSeconds: Double = 30
    /// The `mediagate` executable that decodes SVG and PDF in a child process the time limit
    /// can kill (librsvg and poppler ignore libvips' kill flag). nil: this process's own
    /// executable when it is `mediagate` (so `mediagate serve` isolates them), else none; "":
    /// decode them in this process.
    public var decodeWorker: String? = nil
    /// Address space a decode worker may map, bytes.
    public var decodeWorkerMemoryBytes: Int = 4 << 30
    /// Token-bucket limits on registrations, messages, room actions and uploads (Docs/API.md).
    public var rateLimits = RateLimits()
    /// Seconds a new connection has to finish its first request head before it is closed.
    public var headerTimeoutSeconds: Int = 10
    /// Seconds a connection may sit idle between requests, or stall mid-request, before it is closed.
    public var idleTimeoutSeconds: Int = 120
    /// Connections open at once from one client address (0: no cap); past it, 503 and close.
    public var maxConnectionsPerAddress: Int = 512
    /// Connections open at once in all; past it new ones wait in the listen backlog. Kept below
    /// the process's descriptor limit, whatever is configured.
    public var maxConnections: Int = 10_000

    public init() {}

    /// Keys accepted in the JSON configuration file: the property names above.
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ current: T) throws -> T {
            try container.decodeIfPresent(T.self, forKey: key) ?? current
        }
        host = try value(.host, host)
        port = try value(.port, port)
        dataDirectory = try value(.dataDirectory, dataDirectory)
        allowRegistration = try value(.allowRegistration, allowRegistration)
        accessTokenSeconds = try value(.accessTokenSeconds, accessTokenSeconds)
        refreshTokenSeconds = try value(.refreshTokenSeconds, refreshTokenSeconds)
        refreshReuseGraceSeconds = try value(.refreshReuseGraceSeconds, refreshReuseGraceSeconds)
        capabilityURLs = try value(.capabilityURLs, capabilityURLs)
        maxMessageLength = try value(.maxMessageLength, maxMessageLength)
        maxHistoryPage = try value(.maxHistoryPage, maxHistoryPage)
        maxFailedLoginsPerUser = try value(.maxFailedLoginsPerUser, maxFailedLoginsPerUser)
        maxFailedLoginsPerAddress = try value(.maxFailedLoginsPerAddress, maxFailedLoginsPerAddress)
        maxFailedLoginsPerUserAllAddresses = try value(.maxFailedLoginsPerUserAllAddresses, maxFailedLoginsPerUserAllAddresses)
        trustedProxies = try value(.trustedProxies, trustedProxies)
        loginThrottleWindowSeconds = try value(.loginThrottleWindowSeconds, loginThrottleWindowSeconds)
        passwordHashCost = try value(.passwordHashCost, passwordHashCost)
        maxPendingPasswordHashes = try value(.maxPendingPasswordHashes, maxPendingPasswordHashes)
        maxQueuedFramesPerSocket = try value(.maxQueuedFramesPerSocket, maxQueuedFramesPerSocket)
        maxSocketsPerUser = try value(.maxSocketsPerUser, maxSocketsPerUser)
        typingTimeoutSeconds = try value(.typingTimeoutSeconds, typingTimeoutSeconds)
        maxUploadBytes = try value(.maxUploadBytes, maxUploadBytes)
        uploadExpirySeconds = try value(.uploadExpirySeconds, uploadExpirySeconds)
        uploadSweepIntervalSeconds = try value(.uploadSweepIntervalSeconds, uploadSweepIntervalSeconds)
        processingLeaseSeconds = try value(.processingLeaseSeconds, processingLeaseSeconds)
        database = try value(.database, database)
        databaseConnections = try value(.databaseConnections, databaseConnections)
        blobStore = try value(.blobStore, blobStore)
        blobCacheBytes = try value(.blobCacheBytes, blobCacheBytes)
        uploadPartBytes = try value(.uploadPartBytes, uploadPartBytes)
        metricsFromAnyAddress = try value(.metricsFromAnyAddress, metricsFromAnyAddress)
        signedURLSeconds = try value(.signedURLSeconds, signedURLSeconds)
        maxMultipartBytes = try value(.maxMultipartBytes, maxMultipartBytes)
        userQuotaBytes = try value(.userQuotaBytes, userQuotaBytes)
        minFreeDiskBytes = try value(.minFreeDiskBytes, minFreeDiskBytes)
        maxOpenUploadsPerUser = try value(.maxOpenUploadsPerUser, maxOpenUploadsPerUser)
        forbiddenMimeTypes = try value(.forbiddenMimeTypes, forbiddenMimeTypes)
        durableUploads = try value(.durableUploads, durableUploads)
        thumbnailMemoryCacheBytes = try value(.thumbnailMemoryCacheBytes, thumbnailMemoryCacheBytes)
        stripLocation = try value(.stripLocation, stripLocation)
        rateLimits = try value(.rateLimits, rateLimits)
        mediaTimeLimitSeconds = try value(.mediaTimeLimitSeconds, mediaTimeLimitSeconds)
        decodeWorker = try value(.decodeWorker, decodeWorker)
        decodeWorkerMemoryBytes = try value(.decodeWorkerMemoryBytes, decodeWorkerMemoryBytes)
        headerTimeoutSeconds = try value(.headerTimeoutSeconds, headerTimeoutSeconds)
        idleTimeoutSeconds = try value(.idleTimeoutSeconds, idleTimeoutSeconds)
        maxConnectionsPerAddress = try value(.maxConnectionsPerAddress, maxConnectionsPerAddress)
        maxConnections = try value(.maxConnections, maxConnections)
    }

    /// Reads a JSON configuration file over the defaults.
    public static func load(file path: String) throws -> ChatConfiguration {
        try JSONDecoder().decode(ChatConfiguration.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Applies `MEDIAGATE_HOST`, `MEDIAGATE_PORT`, `MEDIAGATE_DATA_DIR`, `MEDIAGATE_DATABASE`,
    /// `MEDIAGATE_BLOB_STORE`, `MEDIAGATE_ALLOW_REGISTRATION` and `MEDIAGATE_DURABLE_UPLOADS`
    /// from `environment`.
    public mutating func apply(environment: [String: String]) {
        if let host = environment["MEDIAGATE_HOST"], !host.isEmpty { self.host = host }
        if let port = environment["MEDIAGATE_PORT"].flatMap(Int.init) { self.port = port }
        if let directory = environment["MEDIAGATE_DATA_DIR"], !directory.isEmpty { dataDirectory = directory }
        if let url = environment["MEDIAGATE_DATABASE"], !url.isEmpty { database = url }
        if let url = environment["MEDIAGATE_BLOB_STORE"], !url.isEmpty { blobStore = url }
        if let flag = environment["MEDIAGATE_ALLOW_REGISTRATION"] {
            allowRegistration = ["1", "true", "yes"].contains(flag.lowercased())
        }
        if let flag = environment["MEDIAGATE_DURABLE_UPLOADS"] {
            durableUploads = ["1", "true", "yes"].contains(flag.lowercased())
        }
    }

    /// Checks ranges, so that a typo fails at start-up rather than at the first request.
    public func validate() throws {
        func check(_ condition: Bool, _ message: String) throws {
            if !condition { throw ConfigurationError(message: message) }
        }
        try check((0...65_535).contains(port), "port must be between 0 and 65535")
        try check(!dataDirectory.isEmpty, "dataDirectory must not be empty")
        try check(accessTokenSeconds >= 1, "accessTokenSeconds must be at least 1")
        try check(refreshTokenSeconds > accessTokenSeconds, "refreshTokenSeconds must exceed accessTokenSeconds")
        try check((0...3600).contains(refreshReuseGraceSeconds), "refreshReuseGraceSeconds must be 0-3600")
        try check(maxMessageLength > 0 && maxHistoryPage > 0, "message limits must be positive")
        try check((4...31).contains(passwordHashCost), "passwordHashCost must be between 4 and 31")
        try check(maxPendingPasswordHashes >= 1, "maxPendingPasswordHashes must be at least 1")
        try check(maxQueuedFramesPerSocket >= 16, "maxQueuedFramesPerSocket must be at least 16")
        try check(maxSocketsPerUser >= 0, "maxSocketsPerUser must not be negative")
        try check(mediaTimeLimitSeconds > 0 && mediaTimeLimitSeconds <= 3600, "mediaTimeLimitSeconds must be between 0 and 3600")
        try check(decodeWorkerMemoryBytes >= 64 << 20, "decodeWorkerMemoryBytes must be at least 64 MiB")
        try check(maxUploadBytes > 0, "maxUploadBytes must be positive")
        try check(thumbnailMemoryCacheBytes >= 0, "thumbnailMemoryCacheBytes must not be negative")
        try check(userQuotaBytes >= 0, "userQuotaBytes must be 0 (no quota) or positive")
        try check(uploadExpirySeconds >= 1 && uploadSweepIntervalSeconds >= 1, "upload expiry and sweep interval must be positive")
        try check(processingLeaseSeconds >= 1, "processingLeaseSeconds must be positive")
        try check(databaseConnections >= 2, "databaseConnections must be at least 2")
        if let database, !database.isEmpty {
            try check(database.hasPrefix("postgres://") || database.hasPrefix("postgresql://"), "database is a postgres:// URL (or empty for SQLite)")
        }
        if let blobStore, !blobStore.isEmpty {
            try check(blobStore.hasPrefix("s3://"), "blobStore is an s3:// URL (or empty for the data directory)")
        }
        try check(blobCacheBytes >= 16 << 20, "blobCacheBytes must be at least 16 MiB")
        try check((5 << 20 ... 5 << 30).contains(uploadPartBytes), "uploadPartBytes must be between 5 MiB and 5 GiB (S3's part sizes)")
        try check(headerTimeoutSeconds >= 1 && idleTimeoutSeconds >= 1, "headerTimeoutSeconds and idleTimeoutSeconds must be at least 1")
        try check(maxConnectionsPerAddress >= 0 && maxConnections >= 1, "maxConnectionsPerAddress must not be negative, maxConnections at least 1")
        for (name, limit) in [("registrationsPerAddress", rateLimits.registrationsPerAddress), ("messagesPerUser", rateLimits.messagesPerUser),
                              ("roomActionsPerUser", rateLimits.roomActionsPerUser), ("uploadsPerUser", rateLimits.uploadsPerUser)] {
            try check(limit.perMinute >= 0 && (limit.perMinute == 0 || limit.burst >= 1),
                      "rateLimits.\(name): perMinute must not be negative, and a limit needs a burst of at least 1")
        }
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
