import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket

/// `GET /ws/chat/{roomId}?token=ACCESS`: one member's live connection to one room.
///
/// Client → server frames: `message`, `typing_start`, `typing_stop`, `read`, `ping`.
/// Server → client: `message`, `ack`, `delivered`, `read`, `typing_start`, `typing_stop`,
/// `pong`, `error`. A bad frame gets an `error` frame and the socket stays up.
struct ChatSocket: Sendable {
    let tokens: TokenService
    let rooms: any RoomRepository
    let service: MessageService
    let hub: ChatHub
    let maxQueuedFrames: Int
    /// Largest client message; bigger ones are discarded with an `error` frame.
    static let maxMessageBytes = 64 * 1024

    /// Close code telling the client its access token ran out: refresh and reconnect.
    static let tokenExpiredCloseCode = WebSocketErrorCode.unknown(4001)
    /// Close code for a client that does not read its frames fast enough.
    static let tooSlowCloseCode = WebSocketErrorCode.unknown(4008)

    func addRoutes(to router: Router<ChatRequestContext>) {
        router.ws("/ws/chat/:roomId") { request, context in
            // Authenticate and authorise before upgrading: failures are ordinary HTTP errors.
            _ = try await authorise(request, context: context)
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            let (user, roomId, expiresAt) = try await authorise(context.request, context: context.requestContext)
            try await run(user: user, roomId: roomId, tokenExpiresAt: expiresAt, inbound: inbound, outbound: outbound)
        }
    }

    private func authorise(_ request: Request, context: ChatRequestContext) async throws -> (User, Int64, Date) {
        guard let token = AccessTokenMiddleware.token(in: request) else { throw APIError.unauthorized("an access token is required") }
        let (user, expiresAt) = try await tokens.verify(accessToken: token)
        guard let roomId = context.parameters.get("roomId", as: Int64.self),
              try await rooms.isMember(roomId: roomId, userId: user.id) else { throw APIError.notFound("no such room") }
        return (user, roomId, expiresAt)
    }

    private func run(user: User, roomId: Int64, tokenExpiresAt: Date, inbound: WebSocketInboundStream,
                     outbound: WebSocketOutboundWriter) async throws {
        let connection = ChatConnection(user: user, roomId: roomId, maxQueuedFrames: maxQueuedFrames)
        await hub.join(connection)
        // Tells the client it is now in the room's fan-out: nothing sent before this reaches it.
        connection.send(ChatFrames.connected(roomId: roomId, user: user))
        do {
            try await serve(connection, tokenExpiresAt: tokenExpiresAt, inbound: inbound, outbound: outbound)
        } catch {
            await hub.leave(connection)
            throw error
        }
        await hub.leave(connection)
    }

    private enum Role { case writer, reader, expiry }

    private func serve(_ connection: ChatConnection, tokenExpiresAt: Date, inbound: WebSocketInboundStream,
                       outbound: WebSocketOutboundWriter) async throws {
        try await withThrowingTaskGroup(of: Role.self) { group in
            // Writer: the only task that writes to the socket, draining the bounded outbox. It
            // ends when anything closes the connection, and sends the matching close frame.
            group.addTask {
                for await frame in connection.outbox {
                    try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: frame)))
                }
                switch connection.reason {
                case .tooSlow: try await outbound.close(Self.tooSlowCloseCode, reason: "client too slow")
                case .tokenExpired: try await outbound.close(Self.tokenExpiredCloseCode, reason: "token expired")
                case .shutdown, nil: try await outbound.close(.normalClosure, reason: nil)
                }
                return .writer
            }
            // The access token's expiry ends the connection with a close code the client acts on.
            group.addTask {
                try await Task.sleep(for: .seconds(max(0, tokenExpiresAt.timeIntervalSinceNow)))
                connection.close(.tokenExpired)
                return .expiry
            }
            group.addTask {
                try await readFrames(inbound, connection: connection)
                connection.close(.shutdown) // the client went away
                return .reader
            }
            while let role = try await group.next() {
                if role == .writer { break }
            }
            group.cancelAll()
        }
    }

    /// Assembles client messages from frames, refusing oversized ones without closing.
    private func readFrames(_ inbound: WebSocketInboundStream, connection: ChatConnection) async throws {
        var buffer = ByteBuffer()
        var oversized = false
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
            } else {
                await handle(String(buffer: buffer), connection: connection)
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
    }

    private func handle(_ text: String, connection: ChatConnection) async {
        guard let frame = try? JSONDecoder().decode(ClientFrame.self, from: Data(text.utf8)) else {
            connection.send(ChatFrames.error(code: "bad_frame", message: "frames are JSON objects with a string \"type\""))
            return
        }
        let user = connection.user, roomId = connection.roomId
        do {
            switch frame.type {
            case "message":
                let posted = try await service.post(from: user, roomId: roomId, text: frame.content ?? frame.message ?? "",
                                                    clientId: frame.client_id, attachment: frame.attachment)
                if !posted.isNew { connection.send(posted.frame) } // a resend: the sender sees it again
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
                await hub.broadcast(ChatFrames.read(messageId: messageId, roomId: roomId, by: user), roomId: roomId)
            case "ping":
                connection.send(ChatFrames.pong())
            default:
                connection.send(ChatFrames.error(code: "unknown_type", message: "unknown frame type \"\(frame.type)\""))
            }
        } catch let error as APIError {
            connection.send(ChatFrames.error(code: error.code, message: error.message))
        } catch {
            connection.send(ChatFrames.error(code: "internal", message: "the frame could not be processed"))
        }
    }
}
