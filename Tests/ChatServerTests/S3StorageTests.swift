import ChatServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MediagateTestSupport
import NIOCore
import Testing
@testable import ChatServer
@testable import MediagateCore
@testable import MediagateS3

/// Blobs in a real S3 server (SeaweedFS, which checks signatures), read back by clients we did
/// not write: curl signing its own requests (`--aws-sigv4`) and curl against the gateway.
@Suite("blobs in S3")
struct S3StorageTests {
    static func store(_ label: String, cacheBytes: Int64 = 1 << 30, credentials: S3Credentials? = nil,
                      endpoint: String? = nil) async throws -> S3BlobStore {
        var location = try S3Location(url: try await S3Server.blobStoreURL(label), environment: [:])
        if let endpoint, let url = URLComponents(string: endpoint) { location.port = url.port }
        let client = S3Client(location: location, credentials: credentials ?? S3Credentials(accessKeyId: S3Server.accessKey, secretAccessKey: S3Server.secretKey))
        let cache = try BlobCache(directory: try Fixtures.temporaryDirectory("blob-cache").path, maxBytes: cacheBytes)
        return S3BlobStore(client: client, cache: cache)
    }

    /// The same bucket and prefix, seen from another node: an empty cache of its own.
    static func otherNode(of store: S3BlobStore, cacheBytes: Int64 = 1 << 30) throws -> S3BlobStore {
        S3BlobStore(client: store.client, cache: try BlobCache(directory: try Fixtures.temporaryDirectory("blob-cache").path, maxBytes: cacheBytes))
    }

    /// A new file of `count` random bytes and its SHA-256 (sha256sum's).
    static func randomFile(_ count: Int) async throws -> (path: String, sha256: String, bytes: Data) {
        let path = try Fixtures.temporaryDirectory("blob").appendingPathComponent("bytes").path
        try await Fixtures.writeRandomBytes(count, to: path)
        let sha = String(try await Tool.text("sha256sum", [path]).prefix(64))
        return (path, sha, try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The object as curl fetches it, signing the request itself.
    static func curlObject(_ store: S3BlobStore, key: String) async throws -> (status: String, bytes: Data) {
        let out = try Fixtures.temporaryDirectory("curl").appendingPathComponent("object").path
        let location = store.client.location
        let status = try await Tool.text("curl", ["-s", "--max-time", "60", "-o", out, "-w", "%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3",
                                                  "--user", "\(S3Server.accessKey):\(S3Server.secretKey)",
                                                  "\(location.origin)/\(location.bucket)/\(location.keyPrefix)\(key)"])
        return (status, (try? Data(contentsOf: URL(fileURLWithPath: out))) ?? Data())
    }

    static func collect(_ bytes: BlobBytes, range: ClosedRange<Int>) async throws -> Data {
        switch bytes {
        case .file(let path): return try Data(contentsOf: URL(fileURLWithPath: path))[range]
        case .stream(let stream):
            var data = Data()
            for try await chunk in stream { data.append(contentsOf: chunk.readableBytesView) }
            return data
        }
    }

    @Test("a stored blob is one object named by its SHA-256; another node fetches it, streams a range, and stores the same bytes again without sending them")
    func storeAndFetch() async throws {
        let nodeA = try await Self.store("fetch")
        let file = try await Self.randomFile(3 << 20 | 12_345)
        try await nodeA.store(movingFileAt: file.path, sha256: file.sha256)
        #expect(!FileManager.default.fileExists(atPath: file.path), "moved into the cache")
        #expect(await nodeA.cache.cachedPath(sha256: file.sha256) != nil)
        let object = try await Self.curlObject(nodeA, key: "blobs/\(file.sha256)")
        #expect(object.status == "200" && object.bytes == file.bytes)

        let nodeB = try Self.otherNode(of: nodeA)
        // A range is streamed from S3, and nothing lands in B's cache for it.
        let range = 1_000_000...1_999_999
        guard case .stream = try await nodeB.read(sha256: file.sha256, range: Int64(range.lowerBound)...Int64(range.upperBound)) else {
            Issue.record("an uncached blob should stream")
            return
        }
        let streamed = try await Self.collect(try await nodeB.read(sha256: file.sha256, range: 1_000_000...1_999_999), range: range)
        #expect(streamed == file.bytes[range])
        #expect(await nodeB.cache.bytes == 0)
        // The pipeline's path: fetched once, then local.
        let path = try await nodeB.localPath(sha256: file.sha256)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == file.bytes)
        #expect(await nodeB.cache.bytes == Int64(file.bytes.count))
        guard case .file = try await nodeB.read(sha256: file.sha256, range: 0...9) else {
            Issue.record("a cached blob should be read from disk")
            return
        }

        // The same content uploaded through a third node: the object exists, nothing is sent again.
        let nodeC = try Self.otherNode(of: nodeA)
        let again = try Fixtures.temporaryDirectory("blob").appendingPathComponent("same").path
        try file.bytes.write(to: URL(fileURLWithPath: again))
        try await nodeC.store(movingFileAt: again, sha256: file.sha256)
        #expect(try await nodeA.client.list(prefix: "blobs/").map(\.key) == ["blobs/\(file.sha256)"])
    }

    @Test("concurrent fetches of one blob download it once; the cache stays under its bound, least recently used out first")
    func cacheBound() async throws {
        let nodeA = try await Self.store("bound")
        var files: [(path: String, sha256: String, bytes: Data)] = []
        for _ in 0..<3 {
            let file = try await Self.randomFile(1 << 20)
            files.append(file)
            try await nodeA.store(movingFileAt: file.path, sha256: file.sha256)
        }
        let nodeB = try Self.otherNode(of: nodeA, cacheBytes: 5 << 19) // room for two and a half
        let first = files[0].sha256
        let paths = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try await nodeB.localPath(sha256: first) } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(paths.count == 1)
        let cacheFiles = try FileManager.default.contentsOfDirectory(atPath: nodeB.cache.directory)
        #expect(cacheFiles == [first], "one download, no part files left: \(cacheFiles)")
        _ = try await nodeB.localPath(sha256: files[1].sha256)
        _ = try await nodeB.localPath(sha256: first) // used again: now the second is the oldest
        _ = try await nodeB.localPath(sha256: files[2].sha256)
        #expect(await nodeB.cache.bytes <= 5 << 19)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: nodeB.cache.directory)) == [first, files[2].sha256])
        // An evicted blob comes back from S3 on the next use.
        #expect(try Data(contentsOf: URL(fileURLWithPath: try await nodeB.localPath(sha256: files[1].sha256))) == files[1].bytes)
    }

    @Test("orphans: objects no file names go once old enough, from the bucket and the cache; named ones stay")
    func orphans() async throws {
        let store = try await Self.store("orphans")
        let kept = try await Self.randomFile(1000), orphan = try await Self.randomFile(2000)
        try await store.store(movingFileAt: kept.path, sha256: kept.sha256)
        try await store.store(movingFileAt: orphan.path, sha256: orphan.sha256)
        #expect(try await store.removeOrphans(keeping: [kept.sha256], writtenBefore: Date().addingTimeInterval(-3600)) == 0,
                "too new to be an orphan: it may be being stored right now")
        #expect(try await store.removeOrphans(keeping: [kept.sha256], writtenBefore: Date().addingTimeInterval(60)) == 1)
        #expect(try await Self.curlObject(store, key: "blobs/\(orphan.sha256)").status == "404")
        #expect(try await Self.curlObject(store, key: "blobs/\(kept.sha256)").status == "200")
        #expect(await store.cache.cachedPath(sha256: orphan.sha256) == nil)
    }

    @Test("bad credentials, an unreachable server, a missing object: clear errors, nothing half-written in the cache")
    func failures() async throws {
        let file = try await Self.randomFile(5000)
        let wrongSecret = try await Self.store("bad", credentials: S3Credentials(accessKeyId: S3Server.accessKey, secretAccessKey: "not-the-secret"))
        await #expect(throws: DomainError.self) { try await wrongSecret.store(movingFileAt: file.path, sha256: file.sha256) }
        #expect(FileManager.default.fileExists(atPath: file.path), "the upload's bytes stay where they were")
        do {
            try await wrongSecret.store(movingFileAt: file.path, sha256: file.sha256)
        } catch DomainError.storageUnavailable(let detail) {
            #expect(detail.contains("SignatureDoesNotMatch") || detail.contains("403"), "\(detail)")
        }

        // A port nobody listens on: refused at once, retried a few times, then a clear error.
        var unreachable = try await Self.store("down")
        unreachable = S3BlobStore(client: S3Client(location: S3Location(bucket: S3Server.bucket, scheme: "http", host: "127.0.0.1", port: 9,
                                                                        region: "us-east-1"),
                                                   credentials: S3Credentials(accessKeyId: S3Server.accessKey, secretAccessKey: S3Server.secretKey)),
                                  cache: unreachable.cache)
        let started = ContinuousClock.now
        await #expect(throws: DomainError.self) { _ = try await unreachable.localPath(sha256: file.sha256) }
        // ~1.5 s alone (4 tries, 0.2-0.8 s apart); a loaded 2-core test run stretched it to 10 s.
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(try FileManager.default.contentsOfDirectory(atPath: unreachable.cache.directory).isEmpty)
        await #expect(throws: DomainError.self) { try await unreachable.checkReachable() }

        let store = try await Self.store("missing")
        await #expect { _ = try await store.localPath(sha256: String(repeating: "0", count: 64)) } throws: { error in
            (error as? S3Error)?.status == 404
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.cache.directory).isEmpty)
        try await store.checkReachable()
    }

    @Test("multipart: parts from file ranges, listed, a part sent again replaces it, completed into the object; too-small parts and an aborted upload are clear errors")
    func multipart() async throws {
        let store = try await Self.store("multipart")
        let client = store.client
        let file = try await Self.randomFile(5 << 20 | 777_777)
        let key = "uploads/whole"
        let id = try await client.createMultipartUpload(key)
        let first = try await client.uploadPart(key, uploadId: id, number: 1, fileAt: file.path, range: 0..<(5 << 20))
        _ = try await client.uploadPart(key, uploadId: id, number: 2, fileAt: file.path, range: (5 << 20)..<Int64(file.bytes.count))
        // A node that took the upload over sends part 1 again: it replaces the first.
        let again = try await client.uploadPart(key, uploadId: id, number: 1, fileAt: file.path, range: 0..<(5 << 20))
        #expect(again == first, "the same bytes, the same ETag")
        let parts = try await client.listParts(key, uploadId: id)
        #expect(parts.map(\.number) == [1, 2] && parts.map(\.size) == [5 << 20, 777_777], "\(parts)")
        try await client.completeMultipartUpload(key, uploadId: id, parts: parts)
        let object = try await Self.curlObject(store, key: key)
        #expect(object.status == "200" && object.bytes == file.bytes)

        // Every part but the last must be at least 5 MiB.
        let small = try await client.createMultipartUpload("uploads/small")
        for number in 1...2 {
            _ = try await client.uploadPart("uploads/small", uploadId: small, number: number, fileAt: file.path,
                                            range: Int64(number - 1) * 1000..<Int64(number) * 1000)
        }
        await #expect { try await client.completeMultipartUpload("uploads/small", uploadId: small,
                                                                 parts: try await client.listParts("uploads/small", uploadId: small)) } throws: { error in
            (error as? S3Error)?.code == "EntityTooSmall"
        }
        try await client.abortMultipartUpload("uploads/small", uploadId: small)
        await #expect { _ = try await client.listParts("uploads/small", uploadId: small) } throws: { error in
            (error as? S3Error)?.code == "NoSuchUpload"
        }
    }

    @Test("an S3 blob store without credentials, with a bad bucket name or another scheme: refused at start, saying why")
    func startupRefusals() async throws {
        func refusal(_ blobStore: String, environment: [String: String] = S3Server.environment) async -> String {
            do {
                _ = try await ChatServices(configuration: try testConfiguration { $0.blobStore = blobStore }, environment: environment)
                return "started"
            } catch {
                return "\(error)"
            }
        }
        #expect(await refusal("s3://media?endpoint=http://127.0.0.1:9", environment: [:]).contains("AWS_ACCESS_KEY_ID"))
        #expect(await refusal("s3://Bad_Bucket").contains("not an S3 bucket name"))
        #expect(await refusal("gs://media").contains("blobStore is an s3:// URL"))
    }

    @Test("an upload completed while S3 is unreachable waits for it: never refused as corrupt however often it is tried, and stored once S3 is back")
    func outageIsNotCorruption() async throws {
        let database = try await PostgresServer.freshDatabase("outage")
        let blobStore = try await S3Server.blobStoreURL("outage")
        let up = try await ChatServices(configuration: try testConfiguration { $0.database = database; $0.blobStore = blobStore },
                                        environment: S3Server.environment)
        // The same bucket and prefix, through an endpoint nobody answers: a node cut off from S3.
        let unreachable = blobStore.replacingOccurrences(of: try await S3Server.endpoint(), with: "http://127.0.0.1:9")
        let down = try await ChatServices(configuration: try testConfiguration { $0.database = database; $0.blobStore = unreachable },
                                          environment: S3Server.environment)
        let app = Application(router: ChatRouters(services: up).http)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let location = try await TusUploadTests.create(client, token: alice.access, length: 5)
            let patched = try await TusUploadTests.tus(client, .patch, location, token: alice.access,
                                                       headers: TusUploadTests.octets.merging(["Upload-Offset": "0"]) { $1 }, body: Data("hello".utf8))
            #expect(patched.status == .noContent)
            let id = String(location.split(separator: "/").last!)
            let cutOff = ProcessingJobRunner(jobs: down.jobs, ingest: down.ingest, owner: "down", lease: 60, maxAttempts: 2,
                                             doorbell: Doorbell(), logger: Logger(label: "test"))
            for attempt in 1...3 {
                let leased = try #require(try await down.jobs.claim(owner: "down", lease: 60, now: Date().addingTimeInterval(Double(attempt) * 600)))
                #expect(leased.attempts == attempt)
                await cutOff.runOne(leased)
                #expect(try await down.uploads.upload(id: id)?.rejection == nil, "attempt \(attempt)")
            }
            #expect(try await client.call(.get, location, token: alice.access).status == .accepted, "still processing")
            // S3 is back (for this node): the same job succeeds.
            let runner = ProcessingJobRunner(jobs: up.jobs, ingest: up.ingest, owner: "up", lease: 60, maxAttempts: 2,
                                             doorbell: Doorbell(), logger: Logger(label: "test"))
            await runner.runOne(try #require(try await up.jobs.claim(owner: "up", lease: 60, now: Date().addingTimeInterval(3600))))
            #expect(try await client.call(.get, location, token: alice.access).status == .ok)
        }
    }

    @Test("two nodes on PostgreSQL and S3: a file uploaded through A is served by B with Range (curl), its thumbnail too")
    func acrossNodes() async throws {
        let database = try await PostgresServer.freshDatabase("s3nodes")
        let blobStore = try await S3Server.blobStoreURL("nodes")
        let configA = try testConfiguration { $0.database = database; $0.blobStore = blobStore }
        let configB = try testConfiguration { $0.database = database; $0.blobStore = blobStore }
        let nodeA = try await buildApplication(configA, environment: S3Server.environment)
        let nodeB = try await buildApplication(configB, environment: S3Server.environment)
        try await nodeA.test(.live) { a in
            try await nodeB.test(.live) { b in
                let portB = try #require(b.port)
                let alice = try await a.register("alice")
                let photoPath = Fixtures.media("progressive.jpg")
                let photo = try Data(contentsOf: URL(fileURLWithPath: photoPath))
                let id = try await FileServingTests.upload(a, token: alice.access, bytes: photo, name: "photo.jpg")
                #expect(!FileManager.default.fileExists(atPath: configA.dataDirectory + "/files/" + String(try await Tool.text("sha256sum", [photoPath]).prefix(64))),
                        "the bytes are in the bucket, not in node A's files/")

                // Whichever node took the processing job keeps a copy of the file it stored; B's
                // is dropped (the cache checks the disk), so that B has none before the range.
                let cacheB = configB.dataDirectory + "/blob-cache"
                for entry in (try? FileManager.default.contentsOfDirectory(atPath: cacheB)) ?? [] {
                    try FileManager.default.removeItem(atPath: cacheB + "/" + entry)
                }
                let out = try Fixtures.temporaryDirectory("curl").appendingPathComponent("part").path
                let headers = try await Tool.text("curl", ["-s", "--max-time", "60", "-D", "-", "-o", out, "-H", "Authorization: Bearer \(alice.access)",
                                                           "-H", "Range: bytes=100-1099", "http://127.0.0.1:\(portB)/api/files/\(id)"])
                #expect(headers.hasPrefix("HTTP/1.1 206"), "\(headers)")
                #expect(headers.lowercased().contains("content-range: bytes 100-1099/\(photo.count)"), "\(headers)")
                #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == photo[100..<1100])
                #expect(try FileManager.default.contentsOfDirectory(atPath: cacheB).isEmpty,
                        "a range is streamed from S3, not fetched whole")
                let whole = try await Tool.text("curl", ["-s", "--max-time", "60", "-o", out, "-w", "%{http_code}", "-H", "Authorization: Bearer \(alice.access)",
                                                         "http://127.0.0.1:\(portB)/api/files/\(id)"])
                let wholeBytes = try Data(contentsOf: URL(fileURLWithPath: out))
                #expect(whole == "200" && wholeBytes == photo)

                let thumbnail = try await Tool.text("curl", ["-s", "--max-time", "60", "-o", out, "-w", "%{http_code} %{content_type}", "-H", "Authorization: Bearer \(alice.access)",
                                                             "http://127.0.0.1:\(portB)/api/files/\(id)/thumbnail?w=96&format=jpeg"])
                #expect(thumbnail == "200 image/jpeg", "\(thumbnail)")
                let info = try await Tool.text("vipsheader", ["-f", "width", out])
                #expect(Int(info).map { $0 <= 96 && $0 > 0 } == true, "\(info)")
                #expect(try FileManager.default.contentsOfDirectory(atPath: configB.dataDirectory + "/blob-cache").count == 1,
                        "node B fetched the original once to make the thumbnail")

                // curl, not `b`: the test client's connection to B has carried no request yet, and
                // on a loaded machine this test can outlast the server's 10 s wait for a first
                // request head, which then closes it.
                let ready = try await Tool.text("curl", ["-s", "--max-time", "60", "-w", " %{http_code}", "http://127.0.0.1:\(portB)/readyz"])
                #expect(ready.hasSuffix(" 200"), "\(ready)")

                // A third node whose S3 cannot be reached: 503 storage_unavailable with a
                // Retry-After for the file, and not ready; the chat itself still answers.
                let configC = try testConfiguration {
                    $0.database = database
                    $0.blobStore = "s3://\(S3Server.bucket)?endpoint=http://127.0.0.1:9&region=us-east-1"
                }
                let nodeC = try await buildApplication(configC, environment: S3Server.environment)
                try await nodeC.test(.router) { c in
                    let file = try await FileServingTests.get(c, "/api/files/\(id)", token: alice.access)
                    #expect(file.status == .serviceUnavailable && file.headers[.retryAfter] == "2", "\(file.status)")
                    #expect(String(buffer: file.body).contains("storage_unavailable"))
                    let notReady = try await c.call(.get, "/readyz")
                    #expect(notReady.status == .serviceUnavailable && notReady.object["failing"] as? [String] == ["blob_store"], "\(notReady.object)")
                    #expect(try await c.call(.get, "/api/rooms", token: alice.access).status == .ok)
                }
            }
        }
    }
}
