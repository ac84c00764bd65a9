import Foundation
import MediagateWire
import Metrics
import NIOCore
import Synchronization

/// Where one connection's frames are written: a WebSocket's channel, on its own event loop.
package protocol FrameSink: Sendable {
    /// The loop ``write(_:)`` runs on; the hub hands each broadcast to each loop once.
    var eventLoop: any EventLoop { get }
    /// On ``eventLoop`` only: writes and flushes one text frame. False when the client reads
    /// too slowly to take it (the connection is then closed as too slow).
    func write(_ frame: OutboundFrame) -> Bool
}

/// A text frame for the sockets, encoded once however many sockets it goes to: its JSON, and
/// the whole WebSocket frame as it goes on the wire (RFC 6455 §5.2: final, text, unmasked, the
/// server's side), so a broadcast to a thousand sockets writes the same bytes a thousand times
/// instead of framing them a thousand times.
package struct OutboundFrame: Sendable {
    package let text: ByteBuffer
    package let wire: ByteBuffer

    package init(_ text: ByteBuffer) {
        self.text = text
        var wire = ByteBuffer()
        wire.reserveCapacity(text.readableBytes + 10)
        wire.writeInteger(UInt8(0x81)) // FIN, opcode 1 (text)
        switch text.readableBytes {
        case ..<126:
            wire.writeInteger(UInt8(text.readableBytes))
        case ...0xFFFF:
            wire.writeInteger(UInt8(126))
            wire.writeInteger(UInt16(text.readableBytes))
        default:
            wire.writeInteger(UInt8(127))
            wire.writeInteger(UInt64(text.readableBytes))
        }
        var payload = text
        wire.writeBuffer(&payload)
        self.wire = wire
    }

    package init(_ text: String) {
        self.init(ByteBuffer(string: text))
    }
}

/// One open WebSocket, as the hub sees it: who, which room, and where its frames go.
///
/// Frames are written straight to the socket's channel on its event loop: a broadcast costs one
/// hop per event loop and one write per socket, with no task per socket in between (a task per
/// socket draining a queue cost a wake-up and a loop hop per frame). What bounds a client that
/// stops reading is the sink (``FrameSink/write(_:)``), which refuses past its limit.
package final class ChatConnection: Sendable {
    /// Why the server ends a connection.
    package enum CloseReason: Sendable, Equatable {
        case tooSlow
        /// The login the socket was opened with ended (logout, revoked refresh tokens).
        case sessionEnded
        /// Went on sending frames past the rate limit after being told to stop.
        case flooding
        case shutdown
    }

    package let id = UUID()
    package let user: User
    package let roomId: Int64
    /// The login (refresh-token family) whose access token opened the socket.
    package let session: String?
    private let sink: any FrameSink
    /// The sink's loop, kept: asked for on every write and at every broadcast.
    package let eventLoop: any EventLoop
    private let state = Mutex(State())

    private struct State {
        var reason: CloseReason?
        var waiter: CheckedContinuation<CloseReason, Never>?
    }

    package init(user: User, roomId: Int64, session: String?, sink: any FrameSink) {
        self.user = user
        self.roomId = roomId
        self.session = session
        self.sink = sink
        eventLoop = sink.eventLoop
    }

    /// Sends a frame, from any thread; false when the connection is closed already.
    @discardableResult
    package func send(_ frame: String) -> Bool {
        send(OutboundFrame(frame))
    }

    @discardableResult
    package func send(_ frame: OutboundFrame) -> Bool {
        guard reason == nil else { return false }
        if eventLoop.inEventLoop {
            writeOnLoop(frame)
        } else {
            eventLoop.execute { self.writeOnLoop(frame) }
        }
        return true
    }

    /// On ``eventLoop``: writes the frame unless the connection has closed; a sink that refuses
    /// it (the client too slow) closes the connection.
    package func writeOnLoop(_ frame: OutboundFrame) {
        guard reason == nil else { return }
        if !sink.write(frame) { close(.tooSlow) }
    }

    /// Ends the connection (the first reason given is the one kept); ``closed()`` returns.
    package func close(_ reason: CloseReason) {
        state.withLock { state -> CheckedContinuation<CloseReason, Never>? in
            if state.reason == nil { state.reason = reason }
            defer { state.waiter = nil }
            return state.waiter
        }?.resume(returning: self.reason ?? reason)
    }

    package var reason: CloseReason? { state.withLock { $0.reason } }

    /// Returns why, once anything closes the connection; cancelling the waiting task closes it
    /// as `.shutdown` (the server stopping).
    package func closed() async -> CloseReason {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let already = state.withLock { state -> CloseReason? in
                    if let reason = state.reason { return reason }
                    state.waiter = continuation
                    return nil
                }
                if let already { continuation.resume(returning: already) }
            }
        } onCancel: {
            close(.shutdown)
        }
    }
}

/// Who is connected to which room on this node, and delivery of room events to them. Also the
/// typing indicators of this node's sockets, which expire on their own.
///
/// Events reach the hub through the ``ChatBroker`` (``deliver(_:)``), never directly from a
/// service: whatever a service publishes reaches every node's sockets the same way.
package actor ChatHub {
    private var rooms: [Int64: [UUID: ChatConnection]] = [:]
    private var typingExpiry: [Int64: [Int64: Task<Void, Never>]] = [:]
    /// Open sockets per user, against `maxSocketsPerUser`: each one multiplies the cost of
    /// every message to its rooms.
    private var socketsByUser: [Int64: Int] = [:]
    package nonisolated let typingTimeout: Duration
    package nonisolated let maxSocketsPerUser: Int
    /// Where this hub's own events (typing) go: the broker, so other nodes see them too.
    private var broker: (any ChatBroker)?
    /// Told who each new message reached on this node (for delivery receipts).
    private var deliveryObserver: (@Sendable (Delivery) async -> Void)?
    /// Told of every login that ended, on whichever node (to refuse its access tokens here).
    private var sessionObserver: (@Sendable (String) -> Void)?

    /// Who a message reached on this node.
    package struct Delivery: Sendable {
        package var roomId: Int64
        package var messageId: Int64
        package var senderId: Int64
        /// Users (the sender excluded) with a socket the frame was queued on.
        package var reached: Set<Int64>
    }

    /// WebSockets open on this node (`mediagate_sockets_open`).
    private static var openSockets: Meter { Meter(label: "mediagate_sockets_open") }

    package init(typingTimeout: Duration, maxSocketsPerUser: Int = 0) {
        self.typingTimeout = typingTimeout
        self.maxSocketsPerUser = maxSocketsPerUser
    }

    /// Connects the hub to the broker its typing events go through, and to what reports
    /// deliveries. Called once, when the services are assembled.
    package func attach(broker: any ChatBroker, deliveries: (@Sendable (Delivery) async -> Void)?,
                        sessionsEnded: (@Sendable (String) -> Void)? = nil) {
        self.broker = broker
        deliveryObserver = deliveries
        sessionObserver = sessionsEnded
    }

    /// Whether `userId` may open another socket now.
    package func hasRoomForSocket(of userId: Int64) -> Bool {
        maxSocketsPerUser <= 0 || socketsByUser[userId, default: 0] < maxSocketsPerUser
    }

    /// Adds the connection to its room's fan-out; false (not added) when its user already holds
    /// `maxSocketsPerUser` sockets (upgrades racing past the check at the upgrade).
    @discardableResult
    package func join(_ connection: ChatConnection) -> Bool {
        guard hasRoomForSocket(of: connection.user.id) else { return false }
        socketsByUser[connection.user.id, default: 0] += 1
        rooms[connection.roomId, default: [:]][connection.id] = connection
        Self.openSockets.increment()
        return true
    }

    package func leave(_ connection: ChatConnection) async {
        guard rooms[connection.roomId]?[connection.id] != nil else { return }
        let left = socketsByUser[connection.user.id, default: 1] - 1
        socketsByUser[connection.user.id] = left > 0 ? left : nil
        rooms[connection.roomId]?[connection.id] = nil
        Self.openSockets.decrement()
        if rooms[connection.roomId]?.isEmpty == true { rooms[connection.roomId] = nil }
        if !(rooms[connection.roomId]?.values.contains { $0.user.id == connection.user.id } ?? false) {
            await stopTyping(roomId: connection.roomId, user: connection.user)
        }
    }

    /// Delivers an event from the broker to this node's sockets.
    package func deliver(_ event: RoomEvent) async {
        switch event {
        case .frame(let roomId, let frame, let except):
            broadcast(frame, roomId: roomId, except: except)
        case .message(let roomId, let messageId, let senderId, let frame):
            let reached = broadcast(frame, roomId: roomId).subtracting([senderId])
            if !reached.isEmpty, let deliveryObserver {
                await deliveryObserver(Delivery(roomId: roomId, messageId: messageId, senderId: senderId, reached: reached))
            }
        case .toUser(let roomId, let userId, let frame):
            let buffer = OutboundFrame(frame)
            for connection in rooms[roomId]?.values ?? [:].values where connection.user.id == userId {
                connection.send(buffer)
            }
        case .leave(let roomId, let userId):
            for connection in rooms[roomId]?.values ?? [:].values where connection.user.id == userId {
                connection.close(.shutdown)
            }
        case .sessionEnded(let session):
            sessionObserver?(session)
            for connection in rooms.values.flatMap(\.values) where connection.session == session {
                connection.close(.sessionEnded)
            }
        }
    }

    /// Sends `frame` to every socket in the room (but `except`); returns the users with an open
    /// socket it went to.
    ///
    /// The frame is encoded once, and each event loop is handed the room's sockets on it in one
    /// go: a thousand sockets on two loops cost two hops, not a thousand.
    @discardableResult
    package func broadcast(_ frame: String, roomId: Int64, except: UUID? = nil) -> Set<Int64> {
        guard let sockets = rooms[roomId] else { return [] }
        let frame = OutboundFrame(frame)
        var reached = Set<Int64>()
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, connections: [ChatConnection])] = [:]
        for connection in sockets.values where connection.id != except && connection.reason == nil {
            reached.insert(connection.user.id)
            let loop = connection.eventLoop
            byLoop[ObjectIdentifier(loop), default: (loop, [])].connections.append(connection)
        }
        for group in byLoop.values {
            let connections = group.connections
            group.loop.execute {
                for connection in connections { connection.writeOnLoop(frame) }
            }
        }
        return reached
    }

    package func connectionCount(roomId: Int64) -> Int { rooms[roomId]?.count ?? 0 }

    /// Rooms with at least one socket on this node.
    package func roomsWithSockets() -> [Int64] { Array(rooms.keys) }

    // MARK: Typing

    /// Announces that `user` types, unless already announced; the state ends by itself after
    /// `typingTimeout` without another start.
    package func startTyping(roomId: Int64, user: User, except: UUID) async {
        let wasTyping = typingExpiry[roomId]?[user.id] != nil
        typingExpiry[roomId]?[user.id]?.cancel()
        let timeout = typingTimeout
        typingExpiry[roomId, default: [:]][user.id] = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { await self.expireTyping(roomId: roomId, user: user) }
        }
        if !wasTyping {
            await broker?.publish(.frame(roomId: roomId, frame: ChatFrames.typing("typing_start", user: user, roomId: roomId), except: except))
        }
    }

    package func stopTyping(roomId: Int64, user: User) async {
        guard let task = typingExpiry[roomId]?.removeValue(forKey: user.id) else { return }
        task.cancel()
        await broker?.publish(.frame(roomId: roomId, frame: ChatFrames.typing("typing_stop", user: user, roomId: roomId), except: nil))
    }

    private func expireTyping(roomId: Int64, user: User) async {
        guard typingExpiry[roomId]?.removeValue(forKey: user.id) != nil else { return }
        await broker?.publish(.frame(roomId: roomId, frame: ChatFrames.typing("typing_stop", user: user, roomId: roomId), except: nil))
    }
}

/// Server → client frames other than `message` (which is ``MessageJSON``).
package enum ChatFrames {
    package static func encode(_ object: [String: Any?]) -> String {
        let cleaned = object.mapValues { $0 ?? NSNull() }
        let data = (try? JSONSerialization.data(withJSONObject: cleaned, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    package static func typing(_ type: String, user: User, roomId: Int64) -> String {
        encode(["type": type, "sender": user.username, "room_id": roomId])
    }

    package static func ack(messageId: Int64, clientId: String?, roomId: Int64, timestamp: String) -> String {
        encode(["type": "ack", "status": "sent", "id": messageId, "message_id": messageId, "client_id": clientId,
                "room_id": roomId, "timestamp": timestamp])
    }

    package static func delivered(messageId: Int64, roomId: Int64, to users: [String], count: Int) -> String {
        encode(["type": "delivered", "status": "delivered", "message_id": messageId, "room_id": roomId,
                "users": users, "count": count])
    }

    package static func read(messageId: Int64, roomId: Int64, by user: User) -> String {
        encode(["type": "read", "status": "read", "message_id": messageId, "room_id": roomId, "sender": user.username, "user": user.username])
    }

    /// `message` and `room_name` are what the seed app's `WebSocketConnectionMessage` reads.
    package static func connected(room: Room, user: User) -> String {
        encode(["type": "connected", "room_id": room.id, "room_name": room.name, "sender": user.username, "user_id": user.id,
                "message": "Connected to \(room.name)", "timestamp": Timestamp.string(Date())])
    }

    package static func pong() -> String { encode(["type": "pong", "timestamp": Timestamp.string(Date())]) }

    package static func error(code: String, message: String) -> String {
        encode(["type": "error", "code": code, "message": message, "error": ["code": code, "message": message]])
    }
}
