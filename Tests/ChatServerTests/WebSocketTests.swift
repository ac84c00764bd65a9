import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// Live server on 127.0.0.1 (port 0) and real WebSocket clients.
@Suite("WebSocket chat")
struct WebSocketTests {
    @Test("two users see each other's messages, typing, ack, delivered and read receipts")
    func conversation() async throws {
        let app = try await buildApplication(try testConfiguration { $0.typingTimeoutSeconds = 1 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("pair", token: alice.access, members: ["bob"])
            let aliceSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            let bobSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")

            try await aliceSocket.send(["type": "typing_start"])
            let typing = try await bobSocket.inbox.next("typing_start")
            #expect(typing["sender"] as? String == "alice")
            #expect(typing["room_id"] as? Int == room)
            // Nobody sent typing_stop: it expires by itself.
            let stopped = try await bobSocket.inbox.next("typing_stop")
            #expect(stopped["sender"] as? String == "alice")

            try await aliceSocket.send(["type": "message", "content": "hi bob", "client_id": "c-1"])
            let received = try await bobSocket.inbox.next("message")
            #expect(received["content"] as? String == "hi bob")
            #expect(received["message"] as? String == "hi bob")
            #expect(received["sender"] as? String == "alice")
            #expect(received["room_id"] as? Int == room)
            #expect(received["client_id"] as? String == "c-1")
            let messageId = try #require(received["id"] as? Int)
            let ack = try await aliceSocket.inbox.next("ack")
            #expect(ack["status"] as? String == "sent")
            #expect(ack["client_id"] as? String == "c-1")
            #expect(ack["message_id"] as? Int == messageId)
            let delivered = try await aliceSocket.inbox.next("delivered")
            #expect(delivered["message_id"] as? Int == messageId)
            #expect((delivered["users"] as? [Any])?.first as? String == "bob")
            // The sender's own socket gets the message too (other devices, optimistic UI).
            _ = try await aliceSocket.inbox.next("message")

            try await bobSocket.send(["type": "read", "message_id": messageId])
            let read = try await aliceSocket.inbox.next("read")
            #expect(read["message_id"] as? Int == messageId)
            #expect(read["sender"] as? String == "bob")
            let bobsRooms = try await client.call(.get, "/api/rooms", token: bob.access)
            #expect(bobsRooms.array.first?["unread_count"] as? Int == 0)

            // A message posted over REST reaches the sockets as well.
            _ = try await client.call(.post, "/api/messages", token: bob.access, json: ["room_id": room, "content": "from rest"])
            let fromRest = try await aliceSocket.inbox.next("message", where: { $0["content"] as? String == "from rest" })
            #expect(fromRest["sender"] as? String == "bob")

            _ = try await aliceSocket.close()
            _ = try await bobSocket.close()
        }
    }

    @Test("a WebSocket message with an attachment reaches the room with the full attachment and seed keys")
    func attachmentMessage() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("pair", token: alice.access, members: ["bob"])
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("photo-exif-orientation-6.jpg")))
            let fileId = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "IMG_0042.jpg")
            let aliceSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            let bobSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")

            try await aliceSocket.send(["type": "message", "content": "look", "client_id": "pic-1", "attachment": ["file_id": fileId]])
            let received = try await bobSocket.inbox.next("message")
            let attachment = try #require(received["attachment"] as? [String: Any])
            #expect(attachment["type"] as? String == "image")
            #expect(attachment["filename"] as? String == "IMG_0042.jpg")
            #expect(attachment["width"] as? Int == 300 && attachment["height"] as? Int == 400)
            #expect(attachment["mimeType"] as? String == "image/jpeg")
            #expect(attachment["size"] as? Int == photo.count)
            #expect((attachment["blurhash"] as? String)?.isEmpty == false)
            #expect(received["message_type"] as? String == "text_with_image", "a captioned image")
            #expect(attachment["mime_type"] as? String == "image/jpeg")
            #expect(received["message_id"] as? Int == received["id"] as? Int)
            #expect(received["file_name"] as? String == "IMG_0042.jpg")
            #expect(received["file_size"] as? Int == photo.count)
            #expect(received["mime_type"] as? String == "image/jpeg")
            // Bob, who never held a token for the file, loads both URLs as AsyncImage would: no header.
            for key in ["url", "thumbnailUrl"] {
                let url = try #require(attachment[key] as? String)
                #expect(url.contains("sig="))
                let fetched = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)\(url)"])
                #expect(fetched.stdout == "200", "\(key)")
            }
            #expect(received["file_url"] as? String == attachment["url"] as? String)

            // An attachment naming a file nobody gave Bob is refused, and the socket stays up.
            try await bobSocket.send(["type": "message", "content": "mine now", "attachment": ["file_id": "not-a-file"]])
            #expect(try await bobSocket.inbox.next("error")["code"] as? String == "invalid")
            _ = try await aliceSocket.close()
            _ = try await bobSocket.close()
        }
    }

    @Test("bad frames get an error frame and the socket stays up")
    func badFrames() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let socket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            try await socket.sendText("this is not json")
            #expect(try await socket.inbox.next("error")["code"] as? String == "bad_frame")
            try await socket.send(["type": "dance"])
            #expect(try await socket.inbox.next("error")["code"] as? String == "unknown_type")
            try await socket.send(["type": "message", "content": String(repeating: "x", count: 100_000)])
            #expect(try await socket.inbox.next("error")["code"] as? String == "too_large")
            try await socket.send(["type": "message", "content": ""])
            #expect(try await socket.inbox.next("error")["code"] as? String == "invalid")
            try await socket.send(["type": "read"])
            #expect(try await socket.inbox.next("error")["code"] as? String == "invalid")
            try await socket.send(["type": "ping"])
            _ = try await socket.inbox.next("pong")
            try await socket.send(["type": "message", "content": "still here"])
            _ = try await socket.inbox.next("ack")
            _ = try await socket.close()
        }
    }

    @Test("no token, a bad token or a room one is not in: no upgrade")
    func refusedUpgrades() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let mallory = try await client.register("mallory")
            let room = try await client.createRoom("r", token: alice.access, isPrivate: true)
            for path in ["/ws/chat/\(room)", "/ws/chat/\(room)?token=garbage", "/ws/chat/\(room)?token=\(mallory.access)",
                         "/ws/chat/nope?token=\(alice.access)"] {
                await #expect(throws: (any Error).self, "\(path)") { _ = try await TestSocket(port: port, path: path) }
            }
            let plain = try await client.call(.get, "/ws/chat/\(room)?token=\(mallory.access)")
            #expect(plain.status == .notFound)
        }
    }

    @Test("an expired access token leaves the socket open; a logout or a revoked login closes it with 4001")
    func sessionLifetime() async throws {
        // Long enough to register and connect on a loaded machine (2 s was not, with every suite
        // running, nor, once the hostile-load suites came, was 6 s, nor 12 s once now and then).
        let app = try await buildApplication(try testConfiguration { $0.accessTokenSeconds = 20; $0.refreshReuseGraceSeconds = 0 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let socket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            // A second login of the same user, on its own socket: it must outlive the first's logout.
            let login = try await client.call(.post, "/api/auth/login", json: ["username": "alice", "password": "correct horse"])
            let otherAccess = try #require(login.object["access_token"] as? String)
            let otherRefresh = try #require(login.object["refresh_token"] as? String)
            let other = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(otherAccess)")

            try await Task.sleep(for: .seconds(21)) // past the access tokens' life
            try await socket.send(["type": "ping"])
            _ = try await socket.inbox.next("pong")

            // Logging out with only the (expired) access token is refused; with a fresh one it
            // ends that token's login, and only its sockets close.
            let fresh = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": alice.refresh])
            let freshAccess = try #require(fresh.object["access_token"] as? String)
            // (An empty JSON object: HummingbirdTesting sends a bodiless POST as chunked, which
            // the JSON body check refuses without a Content-Type.)
            let stale = try await client.call(.post, "/api/auth/logout", token: alice.access, json: [String: Any]())
            #expect(stale.status == .unauthorized, "\(stale.object)")
            let loggedOut = try await client.call(.post, "/api/auth/logout", token: freshAccess, json: [String: Any]())
            #expect(loggedOut.status == .noContent, "\(loggedOut.object)")
            let closed = try await socket.waitForClose()
            #expect(closed?.closeCode == .unknown(4001))
            #expect(try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": alice.refresh]).status == .unauthorized)
            try await other.send(["type": "ping"])
            _ = try await other.inbox.next("pong")

            // A spent refresh token replayed (no grace here) revokes its login: its socket closes too.
            let next = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": otherRefresh])
            #expect(next.status == .ok)
            #expect(try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": otherRefresh]).status == .unauthorized)
            #expect(try await other.waitForClose()?.closeCode == .unknown(4001))
        }
    }
}

/// A client that completes the WebSocket upgrade and then reads nothing, with a small receive
/// buffer: what a phone on a dead network looks like to the server. Raw socket, no library.
final class StalledSocket: @unchecked Sendable {
    // @unchecked: one descriptor, used by one task at a time.
    let descriptor: Int32

    init(port: Int, path: String) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var small: Int32 = 4096
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TimeoutError(description: "connect: \(errno)") }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        _ = request.withCString { send(descriptor, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Drops the connection with a reset (SO_LINGER 0), as a phone losing its network does.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(descriptor)
    }

    /// Reads until the server's close frame (or the connection's end, or `seconds` of
    /// silence): the HTTP status line of the upgrade, the close frame's status code, and how
    /// many frames came before it.
    func drainUntilClosed(timeout seconds: Int = 15) -> (status: String, closeCode: UInt16?, frames: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 { bytes += buffer[..<count] }
            let parsed = Self.parse(bytes)
            if parsed.closeCode != nil || count <= 0 { return parsed }
        }
    }

    private static func parse(_ bytes: [UInt8]) -> (status: String, closeCode: UInt16?, frames: Int) {
        guard let headEnd = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return ("", nil, 0) }
        let status = String(decoding: bytes[..<headEnd.lowerBound], as: UTF8.self).components(separatedBy: "\r\n").first ?? ""
        // Server frames are unmasked: opcode, then a 7-, 16- or 64-bit length.
        var index = headEnd.upperBound, frames = 0
        while index + 2 <= bytes.count {
            let opcode = bytes[index] & 0x0F
            var length = Int(bytes[index + 1] & 0x7F), header = 2
            if length == 126 {
                guard index + 4 <= bytes.count else { break }
                length = Int(bytes[index + 2]) << 8 | Int(bytes[index + 3])
                header = 4
            } else if length == 127 {
                guard index + 10 <= bytes.count else { break }
                length = bytes[(index + 2)..<(index + 10)].reduce(0) { $0 << 8 | Int($1) }
                header = 10
            }
            guard index + header + length <= bytes.count else { break }
            if opcode == 0x8, length >= 2 {
                return (status, UInt16(bytes[index + header]) << 8 | UInt16(bytes[index + header + 1]), frames)
            }
            frames += 1
            index += header + length
        }
        return (status, nil, frames)
    }
}

@Suite("a client that stops reading")
struct StalledClientTests {
    @Test("over a real socket: closed with 4008 once its channel holds its quota, while the room goes on receiving")
    // 3.6 MB through a debug build: seconds, not milliseconds.
    func stalledClientIsClosed() async throws {
        let app = try await buildApplication(try testConfiguration {
            $0.maxQueuedFramesPerSocket = 16
            $0.rateLimits = .none
        })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("busy", token: alice.access, members: ["bob"])
            let stalled = try StalledSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")
            let aliceSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            // 400 messages of 9,000 characters (3.6 MB): more than the stalled socket's kernel
            // buffers and its channel's 64 KiB hold, past which it may take 16 frames more.
            // Alice waits for each of her messages to come back before the next: her socket
            // keeps up, only Bob's falls behind.
            let text = String(repeating: "x", count: 9000)
            for n in 0..<400 {
                try await aliceSocket.send(["type": "message", "content": "\(n) \(text)"])
                _ = try await aliceSocket.inbox.next("message") { ($0["content"] as? String)?.hasPrefix("\(n) ") == true }
            }
            let outcome = try await offPool { stalled.drainUntilClosed() }
            #expect(outcome.status.hasPrefix("HTTP/1.1 101"))
            #expect(outcome.closeCode == 4008, "\(outcome)")
            #expect(outcome.frames > 16 && outcome.frames < 400, "what reached the stalled client before its close: \(outcome.frames)")
            // A socket reset by its client ends its task too: the server still stops when the
            // test ends (its reader once threw and left the socket's task waiting forever).
            let dropped = try StalledSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")
            try await Task.sleep(for: .milliseconds(300))
            dropped.reset()
            try await aliceSocket.send(["type": "message", "content": "after the reset"])
            _ = try await aliceSocket.inbox.next("message") { $0["content"] as? String == "after the reset" }
            _ = try await aliceSocket.close()
        }
    }
}
