import Foundation
import Hummingbird
import MediagateCore
import MediagateWire

/// `/api/rooms`: the rooms I am in and the public ones, creating, joining, leaving, members,
/// marking read.
///
/// A private room a user is not in answers 404, never 403, so that room ids reveal nothing.
struct RoomController: Sendable {
    let rooms: any RoomRepository
    let users: any UserRepository
    let access: RoomAccess
    let broker: any ChatBroker
    let signer: URLSigner
    /// Rooms created, joined and members added, per user: a room naming a victim costs nothing
    /// to make, and ten thousand of them fill the victim's room list.
    let roomActions: RateLimiter

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.get(use: list)
        routes.post(use: create)
        routes.get(":roomId", use: show)
        routes.post(":roomId/join", use: join)
        routes.post(":roomId/leave", use: leave)
        routes.post(":roomId/mark-read", use: markRead)
        routes.get(":roomId/members", use: members)
        routes.post(":roomId/members", use: addMember)
        return routes
    }

    @Sendable func list(_ request: Request, context: AuthenticatedContext) async throws -> [RoomJSON] {
        try await rooms.summaries(userId: context.user.id).map { RoomJSON($0.room, summary: $0, signer: signer) }
    }

    /// 200, not 201: the seed app reports anything else as "Failed to create room".
    @Sendable func create(_ request: Request, context: AuthenticatedContext) async throws -> RoomJSON {
        try roomActions.check(String(context.user.id), "rooms created or joined")
        let body = try await request.decode(as: CreateRoomBody.self, context: context)
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...100).contains(name.count) else { throw APIError.unprocessable("room names are 1-100 characters") }
        var memberIds = [Int64]()
        for username in body.members ?? [] {
            guard let user = try await users.user(username: username) else {
                throw APIError.unprocessable("no user named \(username)")
            }
            memberIds.append(user.id)
        }
        let room = try await rooms.create(name: name, isPrivate: body.is_private ?? false, creator: context.user.id, members: memberIds)
        return RoomJSON(room)
    }

    @Sendable func show(_ request: Request, context: AuthenticatedContext) async throws -> RoomJSON {
        RoomJSON(try await memberRoom(context))
    }

    @Sendable func join(_ request: Request, context: AuthenticatedContext) async throws -> RoomJSON {
        guard let id = context.parameters.get("roomId", as: Int64.self) else { throw APIError.notFound("no such room") }
        try roomActions.check(String(context.user.id), "rooms created or joined")
        return RoomJSON(try await access.enter(roomId: id, userId: context.user.id))
    }

    /// `POST /api/rooms/{id}/mark-read` (the seed app's, body ignored): everything in the room
    /// is read. Entering a public room this way joins it. The room sees a `read` receipt.
    @Sendable func markRead(_ request: Request, context: AuthenticatedContext) async throws -> MarkReadJSON {
        guard let id = context.parameters.get("roomId", as: Int64.self) else { throw APIError.notFound("no such room") }
        let room = try await access.enter(roomId: id, userId: context.user.id)
        let (count, newest) = try await rooms.markAllRead(roomId: room.id, userId: context.user.id)
        if count > 0, let newest {
            await broker.publish(.frame(roomId: room.id, frame: ChatFrames.read(messageId: newest, roomId: room.id, by: context.user), except: nil))
        }
        return MarkReadJSON(message: "Marked \(count) messages as read", read_count: count)
    }

    @Sendable func leave(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        let room = try await memberRoom(context)
        _ = try await rooms.removeMember(roomId: room.id, userId: context.user.id)
        await broker.publish(.leave(roomId: room.id, userId: context.user.id))
        return Response(status: .noContent)
    }

    @Sendable func members(_ request: Request, context: AuthenticatedContext) async throws -> [UserJSON] {
        let room = try await memberRoom(context)
        return try await rooms.members(roomId: room.id).map(UserJSON.init)
    }

    @Sendable func addMember(_ request: Request, context: AuthenticatedContext) async throws -> EditedResponse<UserJSON> {
        let room = try await memberRoom(context)
        try roomActions.check(String(context.user.id), "rooms created or joined")
        let body = try await request.decode(as: AddMemberBody.self, context: context)
        guard let user = try await users.user(username: body.username) else { throw APIError.notFound("no user named \(body.username)") }
        let added = try await rooms.addMember(roomId: room.id, userId: user.id)
        return EditedResponse(status: added ? .created : .ok, response: UserJSON(user))
    }

    /// The room in the path, if the caller is a member; 404 otherwise.
    private func memberRoom(_ context: AuthenticatedContext) async throws -> Room {
        guard let id = context.parameters.get("roomId", as: Int64.self) else { throw APIError.notFound("no such room") }
        guard try await rooms.isMember(roomId: id, userId: context.user.id), let room = try await rooms.room(id: id) else {
            throw APIError.notFound("no such room")
        }
        return room
    }
}
