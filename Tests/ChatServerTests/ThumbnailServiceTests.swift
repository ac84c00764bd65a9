@testable import ChatServer
import Crypto
import Foundation
import Logging
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MediaPipeline
import MediagateTestSupport
import NIOCore
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

@Suite("thumbnail service")
struct ThumbnailServiceTests {
    /// Width and height of an encoded image, read by vipsheader.
    static func size(of body: ByteBuffer) async throws -> (Int, Int) {
        let url = try Fixtures.temporaryDirectory("thumb").appendingPathComponent("t")
        try Data(buffer: body).write(to: url)
        let width = try await Tool.run("vipsheader", ["-f", "width", url.path]).trimmed
        let height = try await Tool.run("vipsheader", ["-f", "height", url.path]).trimmed
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
            let (id, attachment) = try await FileServingTests.post(client, fixture: "clip-h264.mp4", name: "clip.mp4",
                                                                   token: alice.access, room: room)
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

    @Test("a full thumbnail queue answers 503 with Retry-After at once, and the server goes on")
    func overload() async throws {
        let configuration = try testConfiguration()
        var services = try await ChatServices(configuration: configuration)
        // One worker and one waiting job: the third concurrent request finds the queue full.
        let pool = MediaWorkerPool(threadCount: 1, maxQueuedJobs: 1)
        defer { pool.shutdown() }
        services.thumbnails = try Thumbnails(dataDirectory: configuration.dataDirectory, processor: MediaProcessor(pool: pool))
        let app = Application(router: ChatRouters(services: services).http,
                              services: services.backgroundServices(logger: Logger(label: "test")))
        // Noise does not compress, so each decode takes long enough for requests to pile up.
        let photo = try Fixtures.temporaryDirectory("overload").appendingPathComponent("noise.jpg").path
        _ = try await Tool.run("vips", ["gaussnoise", photo + "[Q=90]", "3000", "2000"])
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let id = try await FileServingTests.upload(client, token: alice.access, bytes: try Data(contentsOf: URL(fileURLWithPath: photo)), name: "n.jpg")
            let variants = Thumbnails.ladder.flatMap { size in ["jpeg", "png"].map { "w=\(size)&format=\($0)" } }
            let statuses = try await withThrowingTaskGroup(of: (String, TestResponse).self) { group in
                for variant in variants {
                    group.addTask { (variant, try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?\(variant)", token: alice.access)) }
                }
                var statuses: [String: HTTPResponse.Status] = [:]
                for try await (variant, response) in group {
                    statuses[variant] = response.status
                    if response.status == .serviceUnavailable {
                        #expect(response.headers[.retryAfter] == "1")
                    } else {
                        #expect(response.status == .ok)
                    }
                }
                return statuses
            }
            let refused = statuses.filter { $0.value == .serviceUnavailable }.map(\.key)
            #expect(!refused.isEmpty, "\(variants.count) requests at once on one worker with a queue of one: some must be refused")
            #expect(statuses.values.contains(.ok))
            // Refused work was not cached half-done, and the same requests succeed once the queue drains.
            for variant in refused {
                #expect(try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?\(variant)", token: alice.access).status == .ok)
            }
        }
    }

    @Test("a large JPEG's decoded picture is kept at upload, and small thumbnails are made from it")
    func decodedPicture() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        let big = try Fixtures.temporaryDirectory("decoded").appendingPathComponent("big.jpg").path
        _ = try await Tool.run("vips", ["resize", try await Fixtures.locationFreeCopy(of: "photo-exif-orientation-6.jpg"), big + "[Q=90]", "10"])
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bytes = try Data(contentsOf: URL(fileURLWithPath: big))
            let id = try await FileServingTests.upload(client, token: alice.access, bytes: bytes, name: "big.jpg")
            let sha = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            // 4000x3000 decoded at 1/8 for the eager 320 px thumbnail: 375x500 upright, kept.
            let decoded = configuration.dataDirectory + "/decoded/\(sha).jpg"
            #expect(try await Tool.run("vipsheader", ["-f", "width", decoded]).trimmed == "375")
            #expect(try FileManager.default.contentsOfDirectory(atPath: configuration.dataDirectory + "/uploads").isEmpty)

            // With the original gone, sizes the decoded picture covers still work; 640 px needs the original.
            try FileManager.default.removeItem(atPath: configuration.dataDirectory + "/files/\(sha)")
            let small = try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?w=96&format=webp", token: alice.access)
            #expect(small.status == .ok)
            let smallSize = try await Self.size(of: small.body)
            #expect(abs(smallSize.0 - 72) <= 1 && smallSize.1 == 96, "\(smallSize)") // libvips may round 72.0 down
            let large = try await FileServingTests.get(client, "/api/files/\(id)/thumbnail?w=640", token: alice.access)
            #expect(large.status != .ok)
        }
    }
}
