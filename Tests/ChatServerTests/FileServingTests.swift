import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import MediagateTestSupport
import NIOCore
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

@Suite("file serving and attachments")
struct FileServingTests {
    /// Uploads `bytes` with tus as `name` and returns the file id once processed.
    static func upload(_ client: some TestClientProtocol, token: String, bytes: Data, name: String) async throws -> String {
        let created = try await TusUploadTests.tus(client, .post, "/api/uploads", token: token,
                                                   headers: TusUploadTests.octets.merging(["Upload-Length": String(bytes.count),
                                                                                           "Upload-Metadata": "filename \(Data(name.utf8).base64EncodedString())"]) { $1 },
                                                   body: bytes)
        let ready = try await TusUploadTests.waitForFile(client, try #require(created.headers[.location]), token: token)
        return try #require(ready.object["file_id"] as? String)
    }

    /// Uploads a fixture and posts it into `room`; returns the file id and the posted attachment.
    static func post(_ client: some TestClientProtocol, fixture: String, name: String, token: String,
                     room: Int) async throws -> (id: String, attachment: [String: Any]) {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media(fixture)))
        let id = try await upload(client, token: token, bytes: bytes, name: name)
        let posted = try await client.call(.post, "/api/messages", token: token, json: ["room_id": room, "attachment": ["file_id": id]])
        return (id, try #require(posted.object["attachment"] as? [String: Any]))
    }

    static func get(_ client: some TestClientProtocol, _ uri: String, token: String? = nil, headers extra: HTTPFields = [:],
                    method: HTTPRequest.Method = .get) async throws -> TestResponse {
        var headers = extra
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await client.executeRequest(uri: uri, method: method, headers: headers, body: nil)
    }

    @Test("the uploader fetches the file: type, nosniff, ETag, 304, Range 206 and 416, HEAD")
    func serving() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("progressive.jpg")))
            let id = try await Self.upload(client, token: alice.access, bytes: photo, name: "photo.jpg")
            let full = try await Self.get(client, "/api/files/\(id)", token: alice.access)
            #expect(full.status == .ok)
            #expect(Data(buffer: full.body) == photo)
            #expect(full.headers[.contentType] == "image/jpeg")
            #expect(full.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            #expect(full.headers[.contentDisposition]?.hasPrefix("inline") == true)
            #expect(full.headers[.contentSecurityPolicy]?.contains("sandbox") == true)
            let etag = try #require(full.headers[.eTag])
            #expect(try await Self.get(client, "/api/files/\(id)", token: alice.access, headers: [.ifNoneMatch: etag]).status == .notModified)

            let part = try await Self.get(client, "/api/files/\(id)", token: alice.access, headers: [.range: "bytes=10-109"])
            #expect(part.status == .partialContent)
            #expect(part.headers[.contentRange] == "bytes 10-109/\(photo.count)")
            #expect(Data(buffer: part.body) == photo[10..<110])
            let tail = try await Self.get(client, "/api/files/\(id)", token: alice.access, headers: [.range: "bytes=-50"])
            #expect(Data(buffer: tail.body) == photo.suffix(50))
            let beyond = try await Self.get(client, "/api/files/\(id)", token: alice.access, headers: [.range: "bytes=\(photo.count)-"])
            #expect(beyond.status == .rangeNotSatisfiable)
            #expect(beyond.headers[.contentRange] == "bytes */\(photo.count)")
            let head = try await Self.get(client, "/api/files/\(id)", token: alice.access, method: .head)
            #expect(head.status == .ok && head.body.readableBytes == 0)
            #expect(head.headers[.contentLength] == String(photo.count))
        }
    }

    @Test("strangers get 404, no token 401; HTML is an attachment with a sanitised name")
    func access() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let mallory = try await client.register("mallory")
            let html = Data("<html><script>alert(document.cookie)</script></html>".utf8)
            let id = try await Self.upload(client, token: alice.access, bytes: html, name: "../../evil\u{202E}lmth.jpg")
            #expect(try await Self.get(client, "/api/files/\(id)", token: mallory.access).status == .notFound)
            #expect(try await Self.get(client, "/api/files/\(id)").status == .unauthorized)
            #expect(try await Self.get(client, "/api/files/nope", token: alice.access).status == .notFound)
            let served = try await Self.get(client, "/api/files/\(id)", token: alice.access)
            #expect(served.headers[.contentType] == "text/html")
            let disposition = try #require(served.headers[.contentDisposition])
            #expect(disposition.hasPrefix("attachment"))
            #expect(!disposition.contains("..") && !disposition.contains("/") && !disposition.contains("\u{202E}"))
            #expect(disposition.contains("evillmth.jpg"))
            #expect(served.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
        }
    }

    @Test("a message carries the file; members fetch it, signed URLs work without a token, forged or expired ones are 403")
    func attachmentsAndSignedURLs() async throws {
        let app = try await buildApplication(try testConfiguration { $0.signedURLSeconds = 5 })
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let mallory = try await client.register("mallory")
            let room = try await client.createRoom("pair", token: alice.access, members: ["bob"])
            let photo = try Data(contentsOf: URL(fileURLWithPath: try await Fixtures.locationFreeCopy(of: "photo-exif-orientation-6.jpg")))
            let id = try await Self.upload(client, token: alice.access, bytes: photo, name: "IMG_0001.jpg")
            // Before it is posted, bob is not allowed to see it.
            #expect(try await Self.get(client, "/api/files/\(id)", token: bob.access).status == .notFound)
            // Nobody can post a file they cannot see.
            let stolen = try await client.call(.post, "/api/messages", token: mallory.access,
                                               json: ["room_id": room, "content": "", "attachment": ["file_id": id]])
            #expect(stolen.status == .notFound || stolen.status == .unprocessableContent)

            let posted = try await client.call(.post, "/api/messages", token: alice.access,
                                               json: ["room_id": room, "content": "", "attachment": ["url": "/api/files/\(id)", "type": "video", "width": 1]])
            #expect(posted.status == .created, "\(posted.object)")
            let attachment = try #require(posted.object["attachment"] as? [String: Any])
            // The server's own record, not the client's claims.
            #expect(attachment["type"] as? String == "image" && attachment["width"] as? Int == 300)
            #expect(posted.object["message_type"] as? String == "image")
            #expect(posted.object["mime_type"] as? String == "image/jpeg")
            #expect(posted.object["file_name"] as? String == "IMG_0001.jpg")
            #expect(posted.object["file_size"] as? Int == photo.count)
            let signed = try #require(attachment["url"] as? String)
            #expect(signed.contains("sig=") && signed.contains("exp="))
            #expect((attachment["thumbnailUrl"] as? String)?.contains("sig=") == true)

            // First, while the 5 s signature is surely fresh (other tests share the machine).
            let anonymous = try await Self.get(client, signed)
            #expect(anonymous.status == .ok)
            #expect(Data(buffer: anonymous.body) == photo)
            #expect(try await Self.get(client, "/api/files/\(id)", token: bob.access).status == .ok)
            #expect(try await Self.get(client, "/api/files/\(id)", token: mallory.access).status == .notFound)
            let tampered = signed.replacingOccurrences(of: "exp=", with: "exp=9")
            #expect(try await Self.get(client, tampered).status == .forbidden)
            // Another id (a different first character), same signature: not valid for it.
            let otherFile = signed.replacingOccurrences(of: id, with: (id.first == "x" ? "y" : "x") + id.dropFirst())
            #expect(try await Self.get(client, otherFile).status != .ok)
            // Past the expiry the URL carries (whole seconds), then refused.
            let expiry = try #require(URLComponents(string: signed)?.queryItems?.first { $0.name == "exp" }?.value.flatMap(Double.init))
            try await Task.sleep(for: .seconds(max(0, expiry - Date().timeIntervalSince1970) + 1.1))
            #expect(try await Self.get(client, signed).status == .forbidden)

            // History signs afresh.
            let history = try await client.call(.get, "/api/messages?room_id=\(room)", token: bob.access)
            let fresh = try #require((history.array.first?["attachment"] as? [String: Any])?["url"] as? String)
            #expect(try await Self.get(client, fresh).status == .ok)
        }
    }
}
