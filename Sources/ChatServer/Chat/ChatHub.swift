import Foundation
import NIOCore
import Synchronization

/// One open WebSocket, as the hub sees it: who, which room, and a bounded queue of frames.
final class ChatConnection: Sendable {
    /// Why the server ends a connection.
    enum CloseReason: Sendable, Equatable {
        case tooSlow
        /// The login the socket was opened with ended (logout, revoked refresh tokens).
        case sessionEnded
        /// Went on sending frames past the rate limit after being told to stop.
        case flooding
        case shutdown
    }

    let id = UUID()
    let user: User
    let roomId: Int64
    /// The login (refresh-token family) whose access token opened the socket.
    let session: String?
    /// Encoded text frames. A broadcast encodes its frame once and every connection shares the bytes.
    let outbox: AsyncStream<ByteBuffer>
    private let continuation: AsyncStream<ByteBuffer>.Continuation
    private let closeReason = Mutex<CloseReason?>(nil)

    init(user: User, roomId: Int64, session: String?, maxQueuedFrames: Int) {
        self.user = user
        self.roomId = roomId
        self.session = session
        // A client that stops reading must not make the server buffer without bound: past
        // `maxQueuedFrames` the frame is refused and the connection is closed as too slow.
        (outbox, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingOldest(maxQueuedFrames))
    }

    /// Queues a frame; false when the client is too slow (and is now being dropped) or gone.
    @discardableResult
    func send(_ frame: String) -> Bool {
        send(ByteBuffer(string: frame))
    }

    @discardableResult
    func send(_ frame: ByteBuffer) -> Bool {
        switch continuation.yield(frame) {
        case .enqueued: return true
        case .dropped:
            close(.tooSlow)
            return false
        case .terminated: return false
        @unknown default: return false
        }
    }

    func close(_ reason: CloseReason) {
        closeReason.withLock { if $0 == nil { $0 = reason } }
        continuation.finish()
    }

    var reason: CloseReason? { closeReason.withLock { $0 } }
}

/// Who is connected to which room, and fan-out of frames to them. Also the typing indicators,
/// which expire on their own.
actor ChatHub {
    private var rooms: [Int64: [UUID: ChatConnection]] = [:]
    private var typingExpiry: [Int64: [Int64: Task<Void, Never>]] = [:]
    /// Open sockets per user, against `maxSocketsPerUser`: each one multiplies the cost of
    /// every message to its rooms.
    private var socketsByUser: [Int64: Int] = [:]
    let typingTimeout: Duration
    let maxSocketsPerUser: Int

    init(typingTimeout: Duration, maxSocketsPerUser: Int = 0) {
        self.typingTimeout = typingTimeout
        self.maxSocketsPerUser = maxSocketsPerUser
    }

    /// Whether `userId` may open another socket now.
    func hasRoomForSocket(of userId: Int64) -> Bool {
        maxSocketsPerUser <= 0 || socketsByUser[userId, default: 0] < maxSocketsPerUser
    }

    /// Adds the connection to its room's fan-out; false (not added) when its user already holds
    /// `maxSocketsPerUser` sockets (upgrades racing past the check at the upgrade).
    @discardableResult
    func join(_ connection: ChatConnection) -> Bool {
        guard hasRoomForSocket(of: connection.user.id) else { return false }
        socketsByUser[connection.user.id, default: 0] += 1
        rooms[connection.roomId, default: [:]][connection.id] = connection
        return true
    }

    func leave(_ connection: ChatConnection) {
        guard rooms[connection.roomId]?[connection.id] != nil else { return }
        let left = socketsByUser[connection.user.id, default: 1] - 1
        socketsByUser[connection.user.id] = left > 0 ? left : nil
        rooms[connection.roomId]?[connection.id] = nil
        if rooms[connection.roomId]?.isEmpty == true { rooms[connection.roomId] = nil }
        if !(rooms[connection.roomId]?.values.contains { $0.user.id == connection.user.id } ?? false) {
            stopTyping(roomId: connection.roomId, user: connection.user)
        }
    }

    /// Sends `frame` to every socket in the room (but `except`); returns the users it reached.
    @discardableResult
    func broadcast(_ frame: String, roomId: Int64, except: UUID? = nil) -> Set<Int64> {
        var reached = Set<Int64>()
        let frame = ByteBuffer(string: frame)
        for connection in rooms[roomId]?.values ?? [:].values where connection.id != except {
            if connection.send(frame) { reached.insert(connection.user.id) }
        }
        return reached
    }

    /// Sends `frame` to every socket of one user in the room.
    func send(_ frame: String, roomId: Int64, userId: Int64) {
        let frame = ByteBuffer(string: frame)
        for connection in rooms[roomId]?.values ?? [:].values where connection.user.id == userId {
            connection.send(frame)
        }
    }

    /// Drops every socket of `userId` in `roomId` (they left the room).
    func disconnect(userId: Int64, roomId: Int64) {
        for connection in rooms[roomId]?.values ?? [:].values where connection.user.id == userId {
            connection.close(.shutdown)
        }
    }

    /// Closes every socket opened with `session`'s access tokens: that login has ended.
    func endSession(_ session: String) {
        for connection in rooms.values.flatMap(\.values) where connection.session == session {
            connection.close(.sessionEnded)
        }
    }

    func connectionCount(roomId: Int64) -> Int { rooms[roomId]?.count ?? 0 }

    // MARK: Typing

    /// Announces that `user` types, unless already announced; the state ends by itself after
    /// `typingTimeout` without another start.
    func startTyping(roomId: Int64, user: User, except: UUID) {
        let wasTyping = typingExpiry[roomId]?[user.id] != nil
        typingExpiry[roomId]?[user.id]?.cancel()
        let timeout = typingTimeout
        typingExpiry[roomId, default: [:]][user.id] = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { self.expireTyping(roomId: roomId, user: user) }
        }
        if !wasTyping {
            broadcast(ChatFrames.typing("typing_start", user: user, roomId: roomId), roomId: roomId, except: except)
        }
    }

    func stopTyping(roomId: Int64, user: User) {
        guard let task = typingExpiry[roomId]?.removeValue(forKey: user.id) else { return }
        task.cancel()
        broadcast(ChatFrames.typing("typing_stop", user: user, roomId: roomId), roomId: roomId)
    }

    private func expireTyping(roomId: Int64, user: User) {
        guard typingExpiry[roomId]?.removeValue(forKey: user.id) != nil else { return }
        broadcast(ChatFrames.typing("typing_stop", user: user, roomId: roomId), roomId: roomId)
    }
}

/// Server → client frames other than `message` (which is ``MessageJSON``).
enum ChatFrames {
    static func encode(_ object: [String: Any?]) -> String {
        let cleaned = object.mapValues { $0 ?? NSNull() }
        let data = (try? JSONSerialization.data(withJSONObject: cleaned, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func typing(_ type: String, user: User, roomId: Int64) -> String {
        encode(["type": type, "sender": user.username, "room_id": roomId])
    }

    static func ack(messageId: Int64, clientId: String?, roomId: Int64, timestamp: String) -> String {
        encode(["type": "ack", "status": "sent", "id": messageId, "message_id": messageId, "client_id": clientId,
                "room_id": roomId, "timestamp": timestamp])
    }

    static func delivered(messageId: Int64, roomId: Int64, to users: [String], count: Int) -> String {
        encode(["type": "delivered", "status": "delivered", "message_id": messageId, "room_id": roomId,
                "users": users, "count": count])
    }

    static func read(messageId: Int64, roomId: Int64, by user: User) -> String {
        encode(["type": "read", "status": "read", "message_id": messageId, "room_id": roomId, "sender": user.username, "user": user.username])
    }

    /// `message` and `room_name` are what the seed app's `WebSocketConnectionMessage` reads.
    static func connected(room: Room, user: User) -> String {
        encode(["type": "connected", "room_id": room.id, "room_name": room.name, "sender": user.username, "user_id": user.id,
                "message": "Connected to \(room.name)", "timestamp": Timestamp.string(Date())])
    }

    static func pong() -> String { encode(["type": "pong", "timestamp": Timestamp.string(Date())]) }

    static func error(code: String, message: String) -> String {
        encode(["type": "error", "code": code, "message": message, "error": ["code": code, "message": message]])
    }
}
