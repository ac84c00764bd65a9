import Foundation

/// Who may enter a room: its members, and anyone for a public room, who becomes a member by
/// entering (reading its history, marking it read, opening a socket), as the seed app expects:
/// it lists every room and has no join step. Private rooms stay 404 to non-members.
package struct RoomAccess: Sendable {
    package let rooms: any RoomRepository

    package init(rooms: any RoomRepository) { self.rooms = rooms }

    /// The room, with `userId` now a member of it.
    /// - Throws: `DomainError` 404 for a room that does not exist or is private to others.
    package func enter(roomId: Int64, userId: Int64) async throws -> Room {
        guard let room = try await rooms.room(id: roomId) else { throw DomainError.notFound("no such room") }
        if try await rooms.isMember(roomId: roomId, userId: userId) { return room }
        guard !room.isPrivate else { throw DomainError.notFound("no such room") }
        _ = try await rooms.addMember(roomId: roomId, userId: userId)
        return room
    }
}
