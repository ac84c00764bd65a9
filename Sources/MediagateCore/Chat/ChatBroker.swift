import Foundation

/// What goes from the service that caused it to every node's sockets in a room.
package enum RoomEvent: Sendable, Equatable {
    /// A frame for every socket in the room but `except` (a connection on the publishing node).
    case frame(roomId: Int64, frame: String, except: UUID?)
    /// A new message's frame, for every socket in the room; each node tells the sender whom it
    /// reached there (`delivered`).
    case message(roomId: Int64, messageId: Int64, senderId: Int64, frame: String)
    /// A frame for one user's sockets in the room.
    case toUser(roomId: Int64, userId: Int64, frame: String)
    /// The user left the room: their sockets in it close.
    case leave(roomId: Int64, userId: Int64)
    /// A login ended (logout, a revoked refresh-token family): its sockets close.
    case sessionEnded(session: String)
}

/// Publish/subscribe for room events. Services publish; every node's ``ChatHub`` receives
/// what is published, in the order it was published per room.
package protocol ChatBroker: Sendable {
    func publish(_ event: RoomEvent) async
    /// Stops receiving other nodes' events (at shutdown, before the database closes).
    func stop() async
}

extension ChatBroker {
    package func stop() async {}
}

/// One node: an event goes straight to this process's hub.
package struct InProcessChatBroker: ChatBroker {
    package let hub: ChatHub

    package init(hub: ChatHub) { self.hub = hub }

    package func publish(_ event: RoomEvent) async { await hub.deliver(event) }
}

/// `delivered` receipts: one per message and node, naming (up to 100 of) the members a new
/// message reached, sent to the sender's sockets in the room. A room of a thousand must not
/// answer every message with a thousand frames.
package struct DeliveryReceipts: Sendable {
    package let rooms: any RoomRepository
    package let broker: any ChatBroker

    package init(rooms: any RoomRepository, broker: any ChatBroker) {
        self.rooms = rooms
        self.broker = broker
    }

    package func send(_ delivery: ChatHub.Delivery) async {
        guard let members = try? await rooms.members(roomId: delivery.roomId) else { return }
        let names = members.filter { delivery.reached.contains($0.id) }.map(\.username).prefix(100)
        await broker.publish(.toUser(roomId: delivery.roomId, userId: delivery.senderId,
                                     frame: ChatFrames.delivered(messageId: delivery.messageId, roomId: delivery.roomId,
                                                                 to: Array(names), count: delivery.reached.count)))
    }
}
