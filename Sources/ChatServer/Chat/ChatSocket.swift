import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOHTTP1
import NIOWebSocket
import MediagateCore
import MediagateWire

/// `GET /ws/chat/{roomId}?token=ACCESS`: one member's live connection to one room.
///
/// Client → server frames (text or binary): `message`, `typing_start`, `typing_stop`, `read`,
/// `reaction`, `ping`. Server → client: `message`, `ack`, `delivered`, `read`, `typing_start`,
/// `typing_stop`, `reaction_added`, `reaction_removed`, `pong`, `error`. A bad frame gets an
/// `error` frame and the socket stays up.
///
/// The access token is checked at the upgrade only: the socket outlives it (the seed app
/// reconnects with the token it first had, so closing at expiry lost its messages), and closes
/// when its login ends (logout, a revoked refresh-token family) or its user leaves the room.
struct ChatSocket: Sendable {
    let tokens: TokenService
    let rooms: any RoomRepository
    let access: RoomAccess
    let service: MessageService
    let reactions: ReactionService
    let hub: ChatHub
    let broker: any ChatBroker
    let maxQueuedFrames: Int
    /// Largest client message; bigger ones are discarded with an `error` frame.
    static let maxMessageBytes = 64 * 1024

    /// Close code telling the client its login has ended: log in again.
    static let sessionEndedCloseCode = WebSocketErrorCode.unknown(4001)
    /// Close code for a client that does not read its frames fast enough.
    static let tooSlowCloseCode = WebSocketErrorCode.unknown(4008)

    func addRoutes(to router: Router<ChatRequestContext>) {
        router.ws("/ws/chat/:roomId") { request, context in
            // Authenticate and authorise before upgrading: failures are HTTP errors (401, 404)
            // with the JSON error body, which the upgrade refusal carries (UpgradeRefusal).
            do {
                // The socket cap before the room: a user at the cap who keeps asking costs no
                // room lookup per refusal.
                let grant = try await verifiedGrant(request, upgraded: false)
                guard await hub.hasRoomForSocket(of: grant.user.id) else {
                    throw APIError.tooManyRequests(retryAfter: 5, "sockets open for this user (at most \(hub.maxSocketsPerUser))")
                }
                _ = try await room(for: grant, context: context)
            } catch {
                guard let refusal = APIError(mapping: error) else { throw error }
                try? await context.channel.pipeline.addHandler(UpgradeRefusal(refusal)).get()
                throw refusal
            }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            let (grant, room) = try await authorise(context.request, context: context.requestContext, upgraded: true)
            let sink = ChannelFrameSink(channel: context.requestContext.channel, maxQueuedFrames: maxQueuedFrames)
            try await run(grant: grant, room: room, sink: sink, inbound: inbound, outbound: outbound)
        }
    }

    /// The token's grant and the room, which a public room's visitor joins by connecting.
    /// `upgraded`: the upgrade was granted on this request already (its token's expiry checked).
    private func authorise(_ request: Request, context: ChatRequestContext, upgraded: Bool) async throws -> (AccessGrant, Room) {
        let grant = try await verifiedGrant(request, upgraded: upgraded)
        return (grant, try await room(for: grant, context: context))
    }

    private func verifiedGrant(_ request: Request, upgraded: Bool) async throws -> AccessGrant {
        guard let token = AccessTokenMiddleware.upgradeToken(in: request) else { throw APIError.unauthorized("an access token is required") }
        return upgraded ? try await tokens.verify(upgradedWith: token) : try await tokens.verify(accessToken: token)
    }

    private func room(for grant: AccessGrant, context: ChatRequestContext) async throws -> Room {
        guard let roomId = context.parameters.get("roomId", as: Int64.self) else { throw APIError.notFound("no such room") }
        return try await access.enter(roomId: roomId, userId: grant.user.id)
    }

    private func run(grant: AccessGrant, room: Room, sink: ChannelFrameSink, inbound: WebSocketInboundStream,
                     outbound: WebSocketOutboundWriter) async throws {
        let user = grant.user
        let connection = ChatConnection(user: user, roomId: room.id, session: grant.session, sink: sink)
        guard await hub.join(connection) else {
            try await outbound.close(.policyViolation, reason: "too many sockets open for this user")
            return
        }
        // Tells the client it is now in the room's fan-out: nothing sent before this reaches it.
        connection.send(ChatFrames.connected(room: room, user: user))
        do {
            try await serve(connection, inbound: inbound, outbound: outbound)
        } catch {
            await hub.leave(connection)
            throw error
        }
        await hub.leave(connection)
    }

    /// Reads the client's frames until anything closes the connection, then sends the matching
    /// close frame. Frames to the client do not pass through here: the hub writes them to the
    /// channel (``ChannelFrameSink``).
    private func serve(_ connection: ChatConnection, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // The client went away, cleanly or not: a reset connection makes the read throw,
                // and a close not made here then left this socket's task waiting for good.
                defer { connection.close(.shutdown) }
                try await readFrames(inbound, connection: connection)
            }
            // Queued on the channel's loop after every frame already written to it.
            switch await connection.closed() {
            case .tooSlow: try? await outbound.close(Self.tooSlowCloseCode, reason: "client too slow")
            case .sessionEnded: try? await outbound.close(Self.sessionEndedCloseCode, reason: "logged out")
            case .flooding: try? await outbound.close(.policyViolation, reason: "over the message rate limit")
            case .shutdown: try? await outbound.close(.normalClosure, reason: nil)
            }
            group.cancelAll()
        }
    }

    /// Assembles client messages from frames, refusing oversized ones without closing.
    private func readFrames(_ inbound: WebSocketInboundStream, connection: ChatConnection) async throws {
        var buffer = ByteBuffer()
        var oversized = false
        var refusedInARow = 0
        for try await frame in inbound {
            if frame.opcode != .continuation { buffer.clear(); oversized = false }
            if !oversized {
                if buffer.readableBytes + frame.data.readableBytes > Self.maxMessageBytes {
                    oversized = true
                    buffer.clear()
                } else {
                    var data = frame.data
                    buffer.writeBuffer(&data)
                }
            }
            guard frame.fin else { continue }
            if oversized {
                connection.send(ChatFrames.error(code: "too_large", message: "frames are at most \(Self.maxMessageBytes) bytes"))
            } else if await handle(String(buffer: buffer), connection: connection) == .rateLimited {
                // Each refusal got an error frame; a client that keeps going is not listening.
                refusedInARow += 1
                if refusedInARow >= Self.maxRefusedInARow {
                    connection.close(.flooding)
                    return
                }
            } else {
                refusedInARow = 0
            }
            buffer.clear()
        }
    }

    private struct ClientFrame: Decodable {
        var type: String
        var content: String?
        var message: String?
        var client_id: String?
        var attachment: JSONValue?
        var message_id: Int64?
        var reaction_type: String?
        var action: String?
    }

    private enum Outcome { case handled, rateLimited }

    /// Frames refused for the rate limit, one after another, before the socket is closed (1008).
    static let maxRefusedInARow = 50

    @discardableResult
    private func handle(_ text: String, connection: ChatConnection) async -> Outcome {
        guard let frame = try? JSONDecoder().decode(ClientFrame.self, from: Data(text.utf8)) else {
            connection.send(ChatFrames.error(code: "bad_frame", message: "frames are JSON objects with a string \"type\""))
            return .handled
        }
        let user = connection.user, roomId = connection.roomId
        do {
            switch frame.type {
            case "message":
                let posted = try await service.post(from: user, roomId: roomId, text: frame.content ?? frame.message ?? "",
                                                    clientId: frame.client_id, attachment: frame.attachment)
                if !posted.isNew { // a resend: the sender sees it again
                    connection.send(String(decoding: try JSONEncoder().encode(posted.message), as: UTF8.self))
                }
                connection.send(ChatFrames.ack(messageId: posted.message.id, clientId: posted.message.client_id,
                                               roomId: roomId, timestamp: posted.message.timestamp))
            case "typing_start":
                await hub.startTyping(roomId: roomId, user: user, except: connection.id)
            case "typing_stop":
                await hub.stopTyping(roomId: roomId, user: user)
            case "read":
                guard let messageId = frame.message_id, messageId > 0 else {
                    throw APIError.unprocessable("read needs a message_id")
                }
                _ = try await rooms.markRead(roomId: roomId, userId: user.id, messageId: messageId)
                await broker.publish(.frame(roomId: roomId, frame: ChatFrames.read(messageId: messageId, roomId: roomId, by: user), except: nil))
            case "reaction":
                // The seed app sends this after its REST call succeeded: applied again, it
                // changes nothing and broadcasts nothing; alone, it works like the REST call.
                guard let messageId = frame.message_id, let type = frame.reaction_type else {
                    throw APIError.unprocessable("reaction needs message_id and reaction_type")
                }
                switch frame.action ?? "add" {
                case "add": try await reactions.applySocketFrame(adding: type, to: messageId, by: user)
                case "remove": try await reactions.applySocketFrame(adding: nil, to: messageId, by: user)
                default: throw APIError.unprocessable("action is add or remove")
                }
            case "ping":
                connection.send(ChatFrames.pong())
            default:
                connection.send(ChatFrames.error(code: "unknown_type", message: "unknown frame type \"\(frame.type)\""))
            }
        } catch {
            guard let error = APIError(mapping: error) else {
                connection.send(ChatFrames.error(code: "internal", message: "the frame could not be processed"))
                return .handled
            }
            connection.send(ChatFrames.error(code: error.code, message: error.message))
            if error.status == .tooManyRequests { return .rateLimited }
        }
        return .handled
    }
}

/// Puts a refused upgrade's real status and JSON error body on the response.
///
/// hummingbird-websocket answers every refused upgrade with an empty 400; the seed app and
/// every other client deserve to know whether to log in again (401) or give up on the room
/// (404). Added to the connection by the refusing route, this rewrites that one response.
final class UpgradeRefusal: ChannelOutboundHandler, RemovableChannelHandler, Sendable {
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart
    let error: APIError

    init(_ error: APIError) { self.error = error }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .head(var head) = unwrapOutboundIn(data), head.status == .badRequest else {
            context.write(data, promise: promise)
            return
        }
        let body = ChatFrames.encode(["error": ["code": error.code, "message": error.message]])
        head.status = HTTPResponseStatus(statusCode: Int(error.status.code))
        head.headers.replaceOrAdd(name: "Content-Type", value: "application/json; charset=utf-8")
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.utf8.count))
        for field in error.headers { head.headers.replaceOrAdd(name: field.name.rawName, value: field.value) }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: promise)
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }
}

/// A WebSocket's channel as the hub writes to it: each frame written and flushed on the
/// channel's event loop, by whoever is on it, with no task per socket.
///
/// The frame's wire bytes (``OutboundFrame/wire``, framed once per broadcast) enter the
/// pipeline just below NIO's `WebSocketFrameEncoder`, which would frame them again for every
/// socket. Frames from Hummingbird's writer (pings, the close frame) still pass through it.
///
/// Back-pressure: the channel buffers what the kernel does not take yet; once that passes its
/// high-water mark (64 KiB) the channel stops being writable, and from then on at most
/// `maxQueuedFrames` more frames are accepted before the client counts as too slow and is
/// closed (4008). A client that stops reading costs a bounded amount of memory.
final class ChannelFrameSink: FrameSink {
    let channel: any Channel
    let maxQueuedFrames: Int
    private let loopState: NIOLoopBoundBox<LoopState>

    private struct LoopState {
        var framesWhileUnwritable = 0
        /// Where framed bytes enter: below the frame encoder. Looked up on the first write
        /// (the pipeline is only read on its loop); nil when there is no encoder to skip.
        var belowEncoder: ChannelHandlerContext?
        var lookedUp = false
    }

    init(channel: any Channel, maxQueuedFrames: Int) {
        self.channel = channel
        self.maxQueuedFrames = maxQueuedFrames
        loopState = NIOLoopBoundBox.makeBoxSendingValue(LoopState(), as: LoopState.self, eventLoop: channel.eventLoop)
    }

    var eventLoop: any EventLoop { channel.eventLoop }

    func write(_ frame: OutboundFrame) -> Bool {
        if channel.isWritable {
            loopState.value.framesWhileUnwritable = 0
        } else {
            loopState.value.framesWhileUnwritable += 1
            if loopState.value.framesWhileUnwritable > maxQueuedFrames { return false }
        }
        if !loopState.value.lookedUp {
            loopState.value.lookedUp = true
            loopState.value.belowEncoder = try? channel.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        }
        if let encoder = loopState.value.belowEncoder {
            encoder.writeAndFlush(NIOAny(frame.wire), promise: nil)
        } else {
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: frame.text), promise: nil)
        }
        return true
    }
}
