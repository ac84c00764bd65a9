import ChatServer
import Foundation
import HummingbirdTesting
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// Media that cannot be decoded, or is over the pixel limit, is delivered as a plain `file` and
/// served only as a download, whichever way it was uploaded; damaged-but-drawable pictures keep
/// their type and carry a warning. Driven by curl (the seed's multipart route) and tus.
@Suite("undecodable media")
struct UndecodableMediaTests {
    /// What the file route answers for `url` with curl: status, Content-Type, Content-Disposition.
    static func fetch(_ url: String) async throws -> (status: String, type: String, disposition: String) {
        let lines = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code}", url]).stdout
            .split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }).map(String.init) // "\r\n" is one Character
        func header(_ name: String) -> String {
            lines.first { $0.lowercased().hasPrefix(name + ":") }
                .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) } ?? ""
        }
        return (lines.last ?? "", header("content-type"), header("content-disposition"))
    }

    @Test("over-limit and undecodable media: type file, octet-stream download, no thumbnail, on both upload paths")
    func plainFiles() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let base = "http://127.0.0.1:\(port)"
            let alice = try await client.register("alice")
            let auth = ["-H", "Authorization: Bearer \(alice.access)"]
            for (fixture, name) in [(Fixtures.hostile("huge-claim.png"), "huge.png"), (Fixtures.realWorld("no-pictures.mp4"), "clip.mp4")] {
                // The seed's multipart route.
                let multipart = try await MultipartUploadTests.curl(auth + ["-F", "file=@\(fixture);filename=\(name)", "\(base)/api/upload-file"])
                #expect(multipart.status == 200, "\(multipart.body)")
                let attachment = try #require(multipart.body["attachment"] as? [String: Any])
                #expect(attachment["type"] as? String == "file", "\(name): \(attachment)")
                #expect(attachment["thumbnailUrl"] is NSNull)
                #expect((attachment["warning"] as? String)?.contains("plain file") == true)
                let capability = try #require(multipart.body["filename"] as? String)
                let served = try await Self.fetch("\(base)/api/files/\(capability)")
                #expect(served.status == "200")
                #expect(served.type == "application/octet-stream", "\(name) \(served)")
                #expect(served.disposition.hasPrefix("attachment"), "\(served.disposition)")

                // tus.
                let bytes = try Data(contentsOf: URL(fileURLWithPath: fixture))
                let id = try await FileServingTests.upload(client, token: alice.access, bytes: bytes, name: name)
                let file = try await client.call(.get, "/api/files/\(id)/thumbnail", token: alice.access)
                #expect(file.status == .notFound)
                #expect((file.object["error"] as? [String: Any])?["code"] as? String == "no_thumbnail")
                let posted = try await client.call(.post, "/api/messages", token: alice.access,
                                                   json: ["room_id": try await client.createRoom("r-\(name)", token: alice.access), "attachment": ["file_id": id]])
                let sent = try #require(posted.object["attachment"] as? [String: Any])
                #expect(sent["type"] as? String == "file")
                #expect(posted.object["message_type"] as? String == "file", "\(posted.object)")
                let signed = try #require(sent["url"] as? String)
                let download = try await Self.fetch(base + signed)
                #expect(download.type == "application/octet-stream" && download.disposition.hasPrefix("attachment"))
            }
        }
    }

    @Test("a JPEG cut short stays an image with a warning, and its thumbnail is served")
    func cutShortPicture() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.realWorld("cut-short.jpg")))
            let id = try await FileServingTests.upload(client, token: alice.access, bytes: bytes, name: "photo.jpg")
            let thumbnail = try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?w=96", token: alice.access)
            #expect(thumbnail.status == .ok)
            let served = try await FileServingTests.get(client, "/api/files/\(id)", token: alice.access)
            #expect(served.headers[.contentType] == "image/jpeg")
            let room = try await client.createRoom("photos", token: alice.access)
            let posted = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "attachment": ["file_id": id]])
            let attachment = try #require(posted.object["attachment"] as? [String: Any])
            #expect(attachment["type"] as? String == "image")
            #expect((attachment["warning"] as? String)?.contains("cut short") == true)
        }
    }
}
