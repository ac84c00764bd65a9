import Foundation
import Logging
import Metrics
import MediagateCore
import MediagateWire
import PostgresNIO

/// Room events across nodes through PostgreSQL `LISTEN/NOTIFY`, with no other service.
///
/// - A new message is announced by the `messages` table's trigger (migration v2), inside the
///   insert's own transaction: a committed message is always announced, an aborted one never.
///   The announcement is a small envelope (room, id, sender); each node reads the row and
///   builds the frame its sockets get, so no frame is ever too large for a notification.
/// - Other events (typing, read receipts, reactions, delivery receipts, a member leaving, a
///   login ending) are notified as JSON; one over PostgreSQL's 8,000-byte limit reaches this
///   node's sockets only (logged).
/// - Each node keeps one listening connection. After it reconnects, the node catches up from
///   the messages table: every room with sockets here gets the messages after the last one it
///   delivered, so no socket misses a message. Messages of a room are inserted one at a time
///   (the insert locks the room's row), so ids within a room follow commit order and "after
///   the last id" is exact.
package actor PostgresChatBroker: ChatBroker {
    package static let channel = "mediagate_room_events"
    /// PostgreSQL refuses payloads of 8,000 bytes or more.
    static let maxPayload = 7_900

    let db: PostgresDatabase
    let hub: ChatHub
    let messages: any MessageRepository
    let signer: URLSigner
    let logger: Logger
    /// The last message delivered per room; rooms not here start after `baseline`.
    private var lastDelivered: [Int64: Int64] = [:]
    private var baseline: Int64?
    private var listener: Task<Void, Never>?
    /// Times the listening connection was (re)established (tests, metrics).
    package private(set) var connections = 0

    package init(db: PostgresDatabase, hub: ChatHub, messages: any MessageRepository, signer: URLSigner, logger: Logger) {
        self.db = db
        self.hub = hub
        self.messages = messages
        self.signer = signer
        self.logger = logger
    }

    /// Starts listening; returns once the first LISTEN is in place (nothing published after
    /// this returns is missed).
    package func start() async {
        guard listener == nil else { return }
        let listening = AsyncStream.makeStream(of: Void.self)
        listener = Task { await self.listen(ready: listening.continuation) }
        for await _ in listening.stream { break }
    }

    package func stop() {
        listener?.cancel()
        listener = nil
    }

    // MARK: Publishing

    package nonisolated func publish(_ event: RoomEvent) async {
        if case .message = event { return } // announced by the insert's trigger
        guard let payload = try? String(decoding: JSONEncoder().encode(Envelope(event)), as: UTF8.self) else { return }
        guard payload.utf8.count <= Self.maxPayload else {
            logger.warning("a room event too large to notify reaches this node's sockets only", metadata: ["bytes": "\(payload.utf8.count)"])
            await hub.deliver(event)
            return
        }
        do {
            try await db.client.query("SELECT pg_notify(\(Self.channel), \(payload))", logger: logger)
        } catch {
            // The database is unreachable: this node's sockets still get the event.
            logger.error("notifying a room event failed", metadata: ["error": "\(error)"])
            await hub.deliver(event)
        }
    }

    // MARK: Listening

    private func listen(ready: AsyncStream<Void>.Continuation) async {
        defer { ready.finish() }
        while !Task.isCancelled, !db.isShutDown {
            do {
                try await db.client.withConnection { connection in
                    try await connection.listen(on: Self.channel) { notifications in
                        await self.listening()
                        ready.yield()
                        for try await notification in notifications {
                            await self.handle(notification.payload)
                        }
                    }
                }
            } catch {
                if Task.isCancelled || db.isShutDown { return }
                logger.warning("the room-event listener lost its connection; reconnecting", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// LISTEN is in place: set the baseline on the first connection, catch up on later ones.
    private func listening() async {
        connections += 1
        do {
            if baseline == nil {
                baseline = try await newestMessageId()
            } else {
                try await catchUp()
            }
        } catch {
            logger.error("catching up on room events failed", metadata: ["error": "\(error)"])
        }
    }

    private func newestMessageId() async throws -> Int64 {
        for try await newest in try await db.client.query("SELECT COALESCE(MAX(id), 0) FROM messages", logger: logger).decode(Int64.self) {
            return newest
        }
        return 0
    }

    /// Delivers, room by room, the messages committed while the listener was away.
    private func catchUp() async throws {
        for roomId in await hub.roomsWithSockets() {
            let after = lastDelivered[roomId] ?? baseline ?? 0
            var missed: [Int64] = []
            for try await id in try await db.client.query("""
                SELECT id FROM messages WHERE room_id = \(roomId) AND id > \(after) ORDER BY id
                """, logger: logger).decode(Int64.self) {
                missed.append(id)
            }
            for id in missed { await deliverMessage(id: id, roomId: roomId) }
        }
    }

    private func handle(_ payload: String) async {
        guard let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(payload.utf8)) else {
            logger.warning("an unreadable room event was ignored")
            return
        }
        if envelope.k == "message", let roomId = envelope.room, let id = envelope.id {
            await deliverMessage(id: id, roomId: roomId)
        } else if let event = envelope.event {
            await hub.deliver(event)
        }
    }

    /// Builds the message's frame from its row and hands it to the hub, once per message.
    private func deliverMessage(id: Int64, roomId: Int64) async {
        if let last = lastDelivered[roomId] ?? baseline, id <= last { return }
        lastDelivered[roomId] = id
        guard await hub.connectionCount(roomId: roomId) > 0 else { return } // nobody here to tell
        do {
            guard let stored = try await messages.message(id: id) else { return }
            let frame = String(decoding: try JSONEncoder().encode(MessageJSON(stored, signer: signer)), as: UTF8.self)
            await hub.deliver(.message(roomId: roomId, messageId: id, senderId: stored.senderId, frame: frame))
            FanoutLag.record(since: stored.createdAt)
        } catch {
            logger.error("reading an announced message failed", metadata: ["message": "\(id)", "error": "\(error)"])
        }
    }
}

/// A room event as JSON, small keys: it travels in every notification.
struct Envelope: Codable {
    var k: String
    var room: Int64?
    var id: Int64?
    var user: Int64?
    var frame: String?
    var except: String?
    var session: String?

    init(_ event: RoomEvent) {
        switch event {
        case .frame(let roomId, let frame, let except):
            self.init(k: "frame", room: roomId, frame: frame, except: except?.uuidString)
        case .message(let roomId, let messageId, let senderId, _):
            self.init(k: "message", room: roomId, id: messageId, user: senderId)
        case .toUser(let roomId, let userId, let frame):
            self.init(k: "user", room: roomId, user: userId, frame: frame)
        case .leave(let roomId, let userId):
            self.init(k: "leave", room: roomId, user: userId)
        case .sessionEnded(let session):
            self.init(k: "session", session: session)
        }
    }

    init(k: String, room: Int64? = nil, id: Int64? = nil, user: Int64? = nil, frame: String? = nil, except: String? = nil,
         session: String? = nil) {
        self.k = k
        self.room = room
        self.id = id
        self.user = user
        self.frame = frame
        self.except = except
        self.session = session
    }

    /// The event, for every kind but `message` (which needs its row read).
    var event: RoomEvent? {
        switch k {
        case "frame":
            guard let room, let frame else { return nil }
            return .frame(roomId: room, frame: frame, except: except.flatMap(UUID.init(uuidString:)))
        case "user":
            guard let room, let user, let frame else { return nil }
            return .toUser(roomId: room, userId: user, frame: frame)
        case "leave":
            guard let room, let user else { return nil }
            return .leave(roomId: room, userId: user)
        case "session":
            return session.map { .sessionEnded(session: $0) }
        default:
            return nil
        }
    }
}
