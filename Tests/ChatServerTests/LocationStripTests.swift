import ChatServer
import Crypto
import Foundation
import HummingbirdTesting
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// A phone's photo posted into a room must not tell the room where it was taken (issue #13):
/// the stored file has no location, on both upload paths, and a deployment can keep it.
@Suite("location stripping")
struct LocationStripTests {
    /// Uploads a located JPEG through the seed's multipart route (curl) and a located HEIC by tus,
    /// then reads back what the server stores and serves.
    /// `check` gets each file's name, the path of the served bytes and the posted attachment.
    static func uploadLocated(_ configuration: ChatConfiguration,
                              check: @escaping @Sendable (String, String, [String: Any]) async throws -> Void) async throws {
        let app = try await buildApplication(configuration)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let jpeg = try await Fixtures.locatedCopy(of: "photo-exif-orientation-6.jpg")
            let multipart = try await MultipartUploadTests.curl(["-H", "Authorization: Bearer \(alice.access)", "-F", "file=@\(jpeg)",
                                                                 "http://127.0.0.1:\(port)/api/upload-file"])
            #expect(multipart.status == 200, "\(multipart.body)")
            let jpegId = try #require(multipart.body["file_id"] as? String)

            let heic = try await Fixtures.locatedCopy(of: "iphone.heic")
            let heicId = try await FileServingTests.upload(client, token: alice.access, bytes: try Data(contentsOf: URL(fileURLWithPath: heic)),
                                                           name: "iphone.heic")
            let room = try await client.createRoom("holiday", token: alice.access)
            for (name, id) in [("photo.jpg", jpegId), ("iphone.heic", heicId)] {
                let posted = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "attachment": ["file_id": id]])
                let attachment = try #require(posted.object["attachment"] as? [String: Any])
                let served = try await FileServingTests.get(client, "/api/files/\(id)", token: alice.access)
                #expect(served.status == .ok)
                let path = try Fixtures.temporaryDirectory("served").appendingPathComponent(name).path
                try Data(buffer: served.body).write(to: URL(fileURLWithPath: path))
                try await check(name, path, attachment)
            }
        }
    }

    @Test("by default the stored photo has no GPS or place, keeps its other metadata, and its hash is of what is served")
    func stripsByDefault() async throws {
        try await Self.uploadLocated(try testConfiguration()) { name, served, attachment in
            let tags = try await Fixtures.exifToolTags(served)
            #expect(Fixtures.locationTags(tags).isEmpty, "\(name) served with \(Fixtures.locationTags(tags))")
            #expect(tags["IFD0:Artist"] == "Ann Example", "\(name)")
            #expect(tags["XMP-dc:Title"] == "Holiday", "\(name)")
            let bytes = try Data(contentsOf: URL(fileURLWithPath: served))
            #expect(attachment["sha256"] as? String == SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined())
            if name == "photo.jpg" {
                // Orientation 6 survives: the attachment still reports the picture as displayed.
                #expect(tags["IFD0:Orientation"] == "6")
                #expect(attachment["width"] as? Int == 300 && attachment["height"] as? Int == 400, "\(attachment)")
            }
        }
    }

    @Test("stripLocation off keeps a deployment's files exactly as uploaded")
    func keptWhenConfigured() async throws {
        try await Self.uploadLocated(try testConfiguration { $0.stripLocation = false }) { name, served, _ in
            let tags = try await Fixtures.exifToolTags(served)
            #expect(tags["XMP-photoshop:City"] == "Paris", "\(name)")
            #expect(tags["GPS:GPSLatitude"].flatMap(Double.init).map { abs($0 - 48.8584) < 0.001 } == true, "\(name): \(tags)")
        }
    }
}
