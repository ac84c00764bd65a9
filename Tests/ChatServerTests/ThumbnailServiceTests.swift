import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import MediagateTestSupport
import NIOCore
import Testing

@Suite("thumbnail service")
struct ThumbnailServiceTests {
    /// Width and height of an encoded image, read by vipsheader.
    static func size(of body: ByteBuffer) async throws -> (Int, Int) {
        let url = try Fixtures.temporaryDirectory("thumb").appendingPathComponent("t")
        try Data(buffer: body).write(to: url)
        let width = try await Tool.exec("vipsheader", ["-f", "width", url.path]).trimmed
        let height = try await Tool.exec("vipsheader", ["-f", "height", url.path]).trimmed
        return (Int(width) ?? 0, Int(height) ?? 0)
    }

    @Test("sizes snap to the ladder, format follows Accept, results are cached and computed once")
    func thumbnails() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let mallory = try await client.register("mallory")
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("photo-exif-orientation-6.jpg")))
            let id = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "p.jpg")
            let thumbs = configuration.dataDirectory + "/thumbs"
            // The 320 px JPEG was made at upload time, in the probe's decode pass.
            #expect(try FileManager.default.contentsOfDirectory(atPath: thumbs).contains { $0.hasSuffix("-320x320-contain.jpg") })

            let webp = try await FileServingTests.get(client, "/api/files/\(id)/thumbnail", token: alice.access, headers: [.accept: "image/webp,*/*"])
            #expect(webp.status == .ok)
            #expect(webp.headers[.contentType] == "image/webp")
            #expect(webp.headers[.vary] == "Accept")
            #expect(try await Self.size(of: webp.body) == (240, 320)) // upright portrait, inside 320

            let jpeg = try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?w=100", token: alice.access)
            #expect(jpeg.headers[.contentType] == "image/jpeg")
            #expect(try await Self.size(of: jpeg.body) == (240, 320)) // 100 snaps up to 320

            // Eight requests at once for a size nobody asked for yet: one file in the cache.
            let before = try FileManager.default.contentsOfDirectory(atPath: thumbs).count
            try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?w=50&h=50&fit=cover&format=png", token: alice.access) }
                }
                var bodies = Set<Data>()
                for try await response in group {
                    #expect(response.status == .ok)
                    bodies.insert(Data(buffer: response.body))
                }
                #expect(bodies.count == 1)
                #expect(try await Self.size(of: ByteBuffer(data: bodies.first!)) == (96, 96))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: thumbs).count == before + 1)

            for bad in ["w=0", "w=abc", "fit=stretch", "format=gif"] {
                #expect(try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?\(bad)", token: alice.access).status == .badRequest)
            }
            #expect(try await FileServingTests.get(client, "/api/files/\(id)/thumbnail", token: mallory.access).status == .notFound)
            #expect(try await FileServingTests.get(client, "/api/files/\(id)/thumbnail").status == .unauthorized)

            let wav = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("tone.wav")))
            let audio = try await FileServingTests.upload(client, token: alice.access, bytes: wav, name: "tone.wav")
            let none = try await FileServingTests.get(client, "/api/files/\(audio)/thumbnail", token: alice.access)
            #expect(none.status == .notFound)
        }
    }

    @Test("a posted image's signed thumbnail URL works without a token; the file's signature does not open the thumbnail")
    func signedThumbnail() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("clip-h264.mp4")))
            let id = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "clip.mp4")
            let posted = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "attachment": ["file_id": id]])
            let attachment = try #require(posted.object["attachment"] as? [String: Any])
            #expect(attachment["type"] as? String == "video")
            let thumbnailURL = try #require(attachment["thumbnailUrl"] as? String)
            let poster = try await FileServingTests.get(client, thumbnailURL)
            #expect(poster.status == .ok)
            #expect(try await Self.size(of: poster.body) == (320, 240))
            let fileURL = try #require(attachment["url"] as? String)
            let query = String(fileURL.split(separator: "?").last!)
            #expect(try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?\(query)").status == .forbidden)
        }
    }
}
