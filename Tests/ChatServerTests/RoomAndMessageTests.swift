import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

@Suite("rooms and messages")
struct RoomAndMessageTests {
    @Test("a non-member gets 404 on every room route, never 403")
    func nonMembers() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let mallory = try await client.register("mallory")
            let secret = try await client.createRoom("secret", token: alice.access, isPrivate: true)
            let calls: [(HTTPRequest.Method, String, [String: Any]?)] = [
                (.get, "/api/rooms/\(secret)", nil), (.get, "/api/rooms/\(secret)/members", nil),
                (.post, "/api/rooms/\(secret)/members", ["username": "mallory"]), (.post, "/api/rooms/\(secret)/leave", nil),
                (.post, "/api/rooms/\(secret)/join", nil), (.get, "/api/messages?room_id=\(secret)", nil),
                (.post, "/api/messages", ["room_id": secret, "content": "let me in"]),
                (.get, "/api/rooms/999999", nil), (.post, "/api/rooms/999999/join", nil),
            ]
            for (method, path, body) in calls {
                let response = try await client.call(method, path, token: mallory.access, json: body)
                #expect(response.status == .notFound, "\(method) \(path)")
                #expect(response.errorCode == "not_found")
            }
            let rooms = try await client.call(.get, "/api/rooms", token: mallory.access)
            #expect(rooms.array.isEmpty)
        }
    }

    @Test("join a public room, list members, leave")
    func membership() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let lobby = try await client.createRoom("lobby", token: alice.access)
            #expect(try await client.call(.post, "/api/rooms/\(lobby)/join", token: bob.access).status == .ok)
            let members = try await client.call(.get, "/api/rooms/\(lobby)/members", token: bob.access)
            #expect(members.array.compactMap { $0["username"] as? String } == ["alice", "bob"])
            #expect(try await client.call(.post, "/api/rooms/\(lobby)/leave", token: bob.access).status == .noContent)
            #expect(try await client.call(.get, "/api/rooms/\(lobby)", token: bob.access).status == .notFound)
            let unknownMember = try await client.call(.post, "/api/rooms/\(lobby)/members", token: alice.access, json: ["username": "ghost"])
            #expect(unknownMember.status == .notFound)
            let badName = try await client.call(.post, "/api/rooms", token: alice.access, json: ["name": "  "])
            #expect(badName.status == .unprocessableContent)
        }
    }

    @Test("history pages newest first with a before cursor, and the limit is capped")
    func paging() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxHistoryPage = 10 })
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let room = try await client.createRoom("log", token: alice.access)
            var ids = [Int]()
            for n in 1...25 {
                let posted = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "content": "m\(n)"])
                #expect(posted.status == .created)
                ids.append(posted.object["id"] as? Int ?? 0)
            }
            var seen = [Int]()
            var before: Int?
            while true {
                let query = "/api/messages?room_id=\(room)&limit=50" + (before.map { "&before=\($0)" } ?? "")
                let page = try await client.call(.get, query, token: alice.access)
                #expect(page.status == .ok)
                #expect(page.array.count <= 10)
                if page.array.isEmpty { break }
                seen += page.array.compactMap { $0["id"] as? Int }
                before = page.array.last?["id"] as? Int
            }
            #expect(seen == ids.reversed())
            let first = try await client.call(.get, "/api/messages?room_id=\(room)&limit=1", token: alice.access)
            #expect(first.array.first?["content"] as? String == "m25")
            #expect(first.array.first?["message"] as? String == "m25")
            #expect(first.array.first?["sender"] as? String == "alice")
            #expect(first.array.first?["message_type"] as? String == "text")
            #expect(first.array.first?.keys.contains("file_url") == true)
            for bad in ["room_id=x", "room_id=\(room)&before=-1", "room_id=\(room)&limit=0", ""] {
                #expect(try await client.call(.get, "/api/messages?\(bad)", token: alice.access).status == .badRequest, "\(bad)")
            }
        }
    }

    @Test("a resend with the same client_id is stored once")
    func idempotentResend() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let body: [String: Any] = ["room_id": room, "content": "hello", "client_id": "offline-queue-1"]
            let first = try await client.call(.post, "/api/messages", token: alice.access, json: body)
            let again = try await client.call(.post, "/api/messages", token: alice.access, json: body)
            #expect(first.status == .created && again.status == .ok)
            #expect(first.object["id"] as? Int == again.object["id"] as? Int)
            #expect(again.object["client_id"] as? String == "offline-queue-1")
            let history = try await client.call(.get, "/api/messages?room_id=\(room)", token: alice.access)
            #expect(history.array.count == 1)
        }
    }

    @Test("bad messages: empty, too long, attachments naming no file, wrong types")
    func badMessages() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxMessageLength = 100 })
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let cases: [([String: Any], HTTPResponse.Status)] = [
                (["room_id": room, "content": "   "], .unprocessableContent),
                (["room_id": room], .unprocessableContent),
                (["room_id": room, "content": String(repeating: "x", count: 101)], .contentTooLarge),
                (["room_id": room, "content": "see file", "attachment": ["type": "image", "filename": "a.jpg", "url": "/api/files/1"]], .unprocessableContent),
                (["room_id": "one", "content": "x"], .badRequest),
                (["content": "x"], .badRequest),
                (["room_id": room, "content": "x", "client_id": ""], .unprocessableContent),
            ]
            for (body, status) in cases {
                let response = try await client.call(.post, "/api/messages", token: alice.access, json: body)
                #expect(response.status == status, "\(body)")
                #expect(response.errorCode != nil)
            }
        }
    }

    @Test("the room list has the last message and the unread count")
    func roomList() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("pair", token: alice.access, members: ["bob"])
            for n in 1...3 {
                _ = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "content": "n\(n)"])
            }
            let bobs = try await client.call(.get, "/api/rooms", token: bob.access)
            let entry = try #require(bobs.array.first)
            #expect(entry["unread_count"] as? Int == 3)
            #expect(entry["member_count"] as? Int == 2)
            #expect((entry["last_message"] as? [String: Any])?["content"] as? String == "n3")
            let alices = try await client.call(.get, "/api/rooms", token: alice.access)
            #expect(alices.array.first?["unread_count"] as? Int == 0)
        }
    }
}
