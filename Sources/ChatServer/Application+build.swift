import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import MediaPipeline
import MediagateCore
import MediagateDiskStorage
import MediagateSQLite
import MediagateWire
import NIOCore
import ServiceLifecycle

/// Everything the server is made of, opened once: used by `buildApplication` and by the
/// command-line tools that administer the same data (`mediagate user add`).
///
/// The storage backends are chosen here, as Hummingbird's todos-postgres example chooses its
/// repository: everything past this point sees only MediagateCore's protocols.
public struct ChatServices: Sendable {
    public let configuration: ChatConfiguration
    let repositories: Repositories
    let users: any UserRepository
    let refreshTokens: any RefreshTokenRepository
    let rooms: any RoomRepository
    let messages: any MessageRepository
    let reactions: any ReactionRepository
    /// Who is connected where; the token service closes a login's sockets through it.
    let hub: ChatHub
    /// Where room events go to reach every node's sockets.
    let broker: any ChatBroker
    let tokens: TokenService
    let passwords: Passwords
    let uploads: any UploadRepository
    /// Resumable uploads' bytes: on this node's disk, or in S3 where any node continues them.
    let uploadStore: any UploadStore
    /// The seed's one-request multipart uploads: on this node's disk whatever the store, since
    /// nobody resumes them.
    let scratchUploads: DiskUploadStore
    let uploadLocker: any UploadLocker
    let jobs: any JobQueue
    /// Rung when this node queues a processing job, so a runner takes it at once.
    let jobDoorbell = Doorbell()
    let fileStore: FileStore
    let ingest: AttachmentIngest
    let urlSigner: URLSigner
    /// A `var` so that tests can put the service on a deliberately tiny pool.
    var thumbnails: Thumbnails
    let policy: UploadPolicy

    /// One pool of media worker threads for the process, however many apps tests build.
    static let mediaWorkers = MediaWorkerPool()
    /// Thumbnail requests get their own pool with a short queue: past it, 503 rather than a pile-up.
    static let thumbnailWorkers = MediaWorkerPool(maxQueuedJobs: 64)

    /// `environment` is where secrets that stay out of the configuration come from: S3's
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    public init(configuration: ChatConfiguration, logger: Logger = Logger(label: "mediagate"),
                environment: [String: String] = ProcessInfo.processInfo.environment) async throws {
        try configuration.validate()
        self.configuration = configuration
        _ = Observability.registry // before any metric is made
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let repositories = try await Repositories.open(configuration, logger: logger)
        self.repositories = repositories
        users = repositories.users
        refreshTokens = repositories.refreshTokens
        rooms = repositories.rooms
        messages = repositories.messages
        reactions = repositories.reactions
        let urlSigner = URLSigner(current: try await repositories.signingKeys.key(named: "url-signing-key"),
                                  previous: try await repositories.signingKeys.existingKey(named: "url-signing-key.previous"),
                                  lifetime: TimeInterval(configuration.signedURLSeconds))
        self.urlSigner = urlSigner
        let hub = ChatHub(typingTimeout: .seconds(configuration.typingTimeoutSeconds), maxSocketsPerUser: configuration.maxSocketsPerUser)
        self.hub = hub
        let broker = await repositories.broker(hub: hub, signer: urlSigner, logger: logger)
        self.broker = broker
        let receipts = DeliveryReceipts(rooms: rooms, broker: broker)
        tokens = try await TokenService.make(signingKeys: repositories.signingKeys, users: users,
                                             refreshTokens: refreshTokens, configuration: configuration,
                                             sessionEnded: { await broker.publish(.sessionEnded(session: $0)) })
        // A login ended on any node: its access tokens are refused here too, not only its
        // sockets closed.
        let ended = tokens.endedSessions
        await hub.attach(broker: broker, deliveries: { await receipts.send($0) }, sessionsEnded: { ended.end($0) })
        passwords = try await Passwords.make(cost: UInt8(configuration.passwordHashCost), maxPending: configuration.maxPendingPasswordHashes)
        uploads = repositories.uploads
        let stores = try ByteStores.open(configuration, environment: environment)
        uploadStore = stores.uploads
        scratchUploads = try DiskUploadStore(dataDirectory: configuration.dataDirectory)
        // Nodes that share a database may each receive a PATCH of the same upload: the writer
        // fence in the database keeps one writer across all of them.
        uploadLocker = repositories.postgres == nil ? InProcessUploadLocker() : FencedUploadLocker(uploads: repositories.uploads)
        jobs = repositories.jobs
        fileStore = FileStore(files: repositories.files, blobs: stores.blobs)
        let limits = MediaLimits(timeLimit: .milliseconds(Int64(configuration.mediaTimeLimitSeconds * 1000)))
        let isolation = Self.decodeWorker(configuration)
        thumbnails = try Thumbnails(dataDirectory: configuration.dataDirectory,
                                    processor: MediaProcessor(limits: limits, pool: Self.thumbnailWorkers, isolation: isolation),
                                    memoryBytes: configuration.thumbnailMemoryCacheBytes)
        policy = UploadPolicy(configuration: configuration)
        ingest = AttachmentIngest(uploads: uploads, uploadStore: uploadStore, store: fileStore,
                                  processor: MediaProcessor(limits: limits, pool: Self.mediaWorkers, isolation: isolation),
                                  thumbnails: thumbnails, policy: policy, stripsLocation: configuration.stripLocation)
    }

    /// Where SVG and PDF are decoded (`decodeWorker` in the configuration).
    static func decodeWorker(_ configuration: ChatConfiguration) -> DecodeWorkerProcess? {
        let executable: String
        if let configured = configuration.decodeWorker {
            guard !configured.isEmpty else { return nil }
            executable = configured
        } else {
            // `mediagate serve` is its own decode worker; a test process running the server in
            // it is not, and decodes in-process unless told where mediagate is.
            guard let running = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
                  (running as NSString).lastPathComponent == "mediagate" else { return nil }
            executable = running
        }
        return DecodeWorkerProcess(executable: executable, memoryLimitBytes: configuration.decodeWorkerMemoryBytes)
    }

    /// The service that deletes expired uploads and collects orphaned blobs.
    func uploadSweeper(logger: Logger) -> some Service {
        UploadSweeper(uploads: uploads, uploadStore: uploadStore, files: fileStore, thumbnails: thumbnails,
                      interval: .seconds(configuration.uploadSweepIntervalSeconds), logger: logger)
    }

    /// What runs beside the server: the sweeper, the runner that processes uploads, the metrics
    /// sampler, and what closes the database once they have stopped.
    func backgroundServices(logger: Logger) -> [any Service] {
        let broker = broker, repositories = repositories
        // Shut down in reverse order: the database closes last, after the room-event listener.
        return [DatabaseCloser(close: {
                    await broker.stop()
                    repositories.close()
                }),
                uploadSweeper(logger: logger), processingRunner(logger: logger), MetricsSampler(repositories: repositories)]
    }

    /// The service that processes completed uploads from the job queue.
    func processingRunner(logger: Logger) -> ProcessingJobRunner {
        ProcessingJobRunner(jobs: jobs, ingest: ingest, owner: "\(ProcessInfo.processInfo.hostName):\(getpid())",
                            lease: TimeInterval(configuration.processingLeaseSeconds), doorbell: jobDoorbell, logger: logger)
    }

    /// Creates an account (`mediagate user add`).
    package func addUser(username: String, password: String) async throws -> User {
        try Passwords.validate(username: username, password: password)
        guard let user = try await users.create(username: username, passwordHash: try await passwords.hash(password)) else {
            throw APIError.conflict("the user name \(username) is taken")
        }
        return user
    }
}

/// The gateway's two routers: HTTP, and the one WebSocket upgrades are matched against.
public struct ChatRouters {
    public let http: Router<ChatRequestContext>
    public let webSocket: Router<ChatRequestContext>

    /// Every route as `METHOD /path/{param}`, for comparing with `Docs/openapi.yaml`.
    public var routeList: [String] {
        (http.routes + webSocket.routes).map { route in
            let path = route.path.description.split(separator: "/").map { segment in
                segment.hasPrefix(":") ? "{\(segment.dropFirst())}" : String(segment)
            }.joined(separator: "/")
            return "\(route.method) /\(path)"
        }
    }

    /// Wires controllers to routes. Tests read the result to check the documented API.
    public init(services: ChatServices) {
        let configuration = services.configuration
        let hub = services.hub
        let access = RoomAccess(rooms: services.rooms)
        let reactionService = ReactionService(rooms: services.rooms, messages: services.messages, reactions: services.reactions,
                                              broker: services.broker)
        let limiters = RateLimiters(configuration.rateLimits)
        let messageService = MessageService(rooms: services.rooms, messages: services.messages, broker: services.broker, hub: hub,
                                            files: services.fileStore, signer: services.urlSigner,
                                            maxMessageLength: configuration.maxMessageLength, rateLimiter: limiters.messages)

        let router = Router(context: ChatRequestContext.self)
        router.add(middleware: ClientAddressMiddleware(trustedProxies: Set(configuration.trustedProxies)))
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: RedactingLogMiddleware())
        router.add(middleware: JSONErrorMiddleware())
        router.get("healthz") { _, _ in ["status": "ok"] }
        router.get("metrics", use: Observability.endpoint(fromAnyAddress: configuration.metricsFromAnyAddress))
        let readiness = Readiness(repositories: services.repositories, dataDirectory: configuration.dataDirectory,
                                  blobs: services.fileStore.blobs)
        router.get("readyz") { _, _ -> Response in
            let report = await readiness.check()
            let body: [String: JSONValue] = report.failing.isEmpty
                ? ["status": .string("ready"), "database": .string(report.engine)]
                : ["status": .string("unavailable"), "database": .string(report.engine), "failing": .array(report.failing.map { .string($0) })]
            return Response(status: report.failing.isEmpty ? .ok : .serviceUnavailable,
                            headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(JSONValue.object(body)))))
        }
        // Files check a Bearer token or a signed URL themselves: AsyncImage sends no header.
        // They take no bodies, so they are added before the JSON body check (a route gets the
        // middleware added before it): one layer less on the hottest path.
        router.addRoutes(FileController(store: services.fileStore, tokens: services.tokens, signer: services.urlSigner,
                                        thumbnails: services.thumbnails, capabilityURLs: configuration.capabilityURLs).endpoints,
                         atPath: "/api/files")
        // The web client at `/`, from files embedded in the binary.
        WebClientController().addRoutes(to: router)
        router.add(middleware: JSONBodyMiddleware())

        let auth = AuthController(
            users: services.users, tokens: services.tokens, passwords: services.passwords,
            throttle: LoginThrottle(window: TimeInterval(configuration.loginThrottleWindowSeconds),
                                    maxPerUserFromAddress: configuration.maxFailedLoginsPerUser,
                                    maxPerUser: configuration.maxFailedLoginsPerUserAllAddresses,
                                    maxPerAddress: configuration.maxFailedLoginsPerAddress),
            allowRegistration: configuration.allowRegistration, registrations: limiters.registrations)
        router.addRoutes(auth.publicEndpoints, atPath: "/api/auth")

        // Everything below needs an access token; the child context makes that a type.
        let api = router.group("api")
            .add(middleware: AccessTokenMiddleware(tokens: services.tokens))
            .group(context: AuthenticatedContext.self)
        api.addRoutes(auth.authenticatedEndpoints, atPath: "auth")
        api.addRoutes(RoomController(rooms: services.rooms, users: services.users, access: access, broker: services.broker,
                                     signer: services.urlSigner, roomActions: limiters.roomActions).endpoints, atPath: "rooms")
        let uploadEngine = UploadEngine(
            uploads: services.uploads, store: services.uploadStore, locker: services.uploadLocker, policy: services.policy,
            rooms: services.rooms, files: services.fileStore, ingest: services.ingest, jobDoorbell: services.jobDoorbell,
            maxSize: configuration.maxUploadBytes, expiry: TimeInterval(configuration.uploadExpirySeconds),
            durable: configuration.durableUploads)
        let multipart = MultipartUploadController(files: services.scratchUploads, uploads: services.uploads,
                                                  ingest: services.ingest, policy: services.policy,
                                                  signer: services.urlSigner, maxBytes: configuration.maxMultipartBytes)
        // One front for every upload endpoint: the IETF draft on any of them, by name.
        let resumable = ResumableUploadFront(engine: uploadEngine, targets: [
            MultipartUploadController.resumableTarget: .init(path: APIPath.uploadFile, maxBytes: multipart.maxBodyBytes,
                                                             handler: multipart.upload),
        ])
        let tus = TusController(engine: uploadEngine)
        router.addRoutes(tus.publicEndpoints, atPath: "/api/uploads")
        api.addRoutes(tus.endpoints(resumable: resumable), atPath: "uploads")
        api.addRoutes(multipart.endpoints(resumable: resumable), atPath: "upload-file")
        api.addRoutes(MessageController(access: access, messages: services.messages, reactions: services.reactions,
                                        service: messageService, maxPage: configuration.maxHistoryPage).endpoints, atPath: "messages")
        api.addRoutes(ReactionController(service: reactionService).endpoints, atPath: "reactions")

        let socketRouter = Router(context: ChatRequestContext.self)
        socketRouter.add(middleware: JSONErrorMiddleware())
        ChatSocket(tokens: services.tokens, rooms: services.rooms, access: access, service: messageService,
                   reactions: reactionService, hub: hub, broker: services.broker,
                   maxQueuedFrames: configuration.maxQueuedFramesPerSocket).addRoutes(to: socketRouter)
        http = router
        webSocket = socketRouter
    }
}

/// Builds the gateway: services, routes, WebSocket upgrade. Tests call this too.
///
/// - Parameters:
///   - configuration: Where to listen and keep data; see ``ChatConfiguration``.
///   - logger: The application's logger.
public func buildApplication(
    _ configuration: ChatConfiguration, logger: Logger = Logger(label: "mediagate"),
    environment: [String: String] = ProcessInfo.processInfo.environment
) async throws -> some ApplicationProtocol {
    let services = try await ChatServices(configuration: configuration, logger: logger, environment: environment)
    let routers = ChatRouters(services: services)
    // Frames up to 1 MiB are read so that an oversized message gets an error frame instead of a
    // dropped connection; the server pings idle sockets every 30 s and closes those that do not
    // answer.
    let channel = HTTP1WebSocketUpgradeChannel.Configuration(
        http1: .init(additionalChannelHandlers: [
            ExpectContinueHandler(),
            CachedThumbnailHandler(files: services.fileStore, thumbnails: services.thumbnails,
                                   signer: services.urlSigner, logger: logger),
        ], idleTimeout: .seconds(Int64(configuration.idleTimeoutSeconds)),
        // Request heads of at most 64 KiB (16 KiB a field, 200 fields), as nginx's defaults allow.
        httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 << 10, maxHeaderListSize: 64 << 10, maxHeaderFieldCount: 200)),
        ws: .init(maxFrameSize: 1 << 20, autoPing: .enabled(timePeriod: .seconds(30))))
    let webSocketResponder = routers.webSocket.buildResponder()
    let counts = ConnectionCounts(maxPerAddress: configuration.maxConnectionsPerAddress)
    let headerTimeout = TimeAmount.seconds(Int64(configuration.headerTimeoutSeconds))
    let server = HTTPServerBuilder { responder in
        GuardedChildChannel(base: HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder,
                                                               configuration: channel),
                            counts: counts, headerTimeout: headerTimeout)
    }
    return Application(
        router: routers.http,
        server: server,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "mediagate",
                             availableConnectionsDelegate: MaximumAvailableConnections(ConnectionLimit.effective(configuration.maxConnections))),
        services: services.backgroundServices(logger: logger),
        logger: logger
    )
}

/// The connection cap in effect: the configured one, or fewer when the process may not open
/// that many descriptors (files, the database and the listener need some too).
enum ConnectionLimit {
    static func effective(_ configured: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int.max) else { return configured }
        return max(16, min(configured, Int(limit.rlim_cur) - 256))
    }
}

/// Request bodies of the JSON API must say they are JSON (415 otherwise).
struct JSONBodyMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let length = request.headers[.contentLength].flatMap(Int.init) ?? 0
        let hasBody = length > 0 || request.headers[.transferEncoding] != nil
        // tus requests carry raw bytes (application/offset+octet-stream) and check their own type.
        if hasBody, [.post, .put, .patch].contains(request.method), request.uri.path.hasPrefix("/api/"),
           !request.uri.path.hasPrefix("/api/uploads"), request.uri.path != "/api/upload-file" {
            let type = request.headers[.contentType]?.lowercased() ?? ""
            guard type.hasPrefix("application/json") else {
                throw APIError.unsupportedMediaType("request bodies are application/json")
            }
        }
        return try await next(request, context)
    }
}

extension UploadPolicy {
    init(configuration: ChatConfiguration) {
        self.init(quotaBytes: configuration.userQuotaBytes, forbiddenTypes: configuration.forbiddenMimeTypes,
                  starts: configuration.rateLimits.uploadsPerUser, minFreeDiskBytes: configuration.minFreeDiskBytes,
                  dataDirectory: configuration.dataDirectory, maxOpenUploads: configuration.maxOpenUploadsPerUser)
    }
}
