import Hummingbird
import HummingbirdWebSocket
import NIOCore
import MediagateCore
import MediagateWire

/// The request context of every route: who is calling (once authenticated) and from where.
public struct ChatRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<ChatRequestContext>
    /// Set by ``AccessTokenMiddleware``.
    package var identity: User?
    /// The login the access token belongs to; set with `identity`.
    public var session: String?
    /// The client's address, for throttling: the peer's, or what a trusted proxy says it is
    /// (``ClientAddressMiddleware``).
    public var remoteAddress: String
    /// The connection, for a refused WebSocket upgrade to answer with its real status.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        channel = source.channel
    }

    /// Login, register and refresh bodies are small; uploads have their own routes (#4).
    public var maxUploadSize: Int { 64 * 1024 }
}

/// The context of routes that require a logged-in user: having one *is* being authenticated.
public struct AuthenticatedContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    package let user: User
    /// The login the access token belongs to (nil for tokens older than the claim).
    public let session: String?
    /// The connection, for interim responses (`104 Upload Resumption Supported`).
    let channel: any Channel
    /// Set when the request is one the resumable front rebuilt from a completed upload: its
    /// start was counted (and its limits checked) when the upload was created.
    var replaysResumableUpload = false
    public var maxUploadSize: Int { 64 * 1024 }

    public init(context: ChatRequestContext) throws {
        guard let user = context.identity else { throw APIError.unauthorized("an access token is required") }
        coreContext = context.coreContext
        self.user = user
        session = context.session
        channel = context.channel
    }
}
