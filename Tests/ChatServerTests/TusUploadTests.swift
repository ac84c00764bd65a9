@testable import ChatServer
import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import MediagateTestSupport
import NIOCore
import Synchronization
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

@Suite("tus uploads")
struct TusUploadTests {
    static func field(_ name: String) -> HTTPField.Name { HTTPField.Name(name)! }

    /// Sends a tus request and returns status and headers.
    static func tus(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String?,
                    headers extra: [String: String] = [:], body: Data? = nil, version: String? = "1.0.0") async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if let version { headers[field("Tus-Resumable")] = version }
        for (name, value) in extra { headers[field(name)] = value }
        return try await client.executeRequest(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(data: $0) })
    }

    static func create(_ client: some TestClientProtocol, token: String, length: Int, metadata: String? = nil) async throws -> String {
        var headers = ["Upload-Length": String(length)]
        if let metadata { headers["Upload-Metadata"] = metadata }
        let response = try await tus(client, .post, "/api/uploads", token: token, headers: headers)
        #expect(response.status == .created)
        return try #require(response.headers[.location])
    }

    static let octets = ["Content-Type": "application/offset+octet-stream"]

    /// Polls `GET location` until the pipeline has turned the upload into a file.
    static func waitForFile(_ client: some TestClientProtocol, _ location: String, token: String) async throws -> JSONResponse {
        for _ in 0..<500 {
            let response = try await client.call(.get, location, token: token)
            if response.status == .ok { return response }
            #expect(response.status == .accepted, "\(response.object)")
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TimeoutError(description: "the upload was not processed")
    }

    @Test("OPTIONS advertises the version, extensions, limit and checksum algorithms")
    func discovery() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxUploadBytes = 1000 })
        try await app.test(.router) { client in
            let response = try await Self.tus(client, .options, "/api/uploads", token: nil, version: nil)
            #expect(response.status == .noContent)
            #expect(response.headers[Self.field("Tus-Version")] == "1.0.0")
            #expect(response.headers[Self.field("Tus-Max-Size")] == "1000")
            #expect(response.headers[Self.field("Tus-Checksum-Algorithm")] == "sha1,sha256,md5")
            let extensions = response.headers[Self.field("Tus-Extension")] ?? ""
            for name in ["creation", "creation-with-upload", "creation-defer-length", "termination", "checksum", "expiration"] {
                #expect(extensions.split(separator: ",").contains(Substring(name)))
            }
        }
    }

    @Test("create, resume from HEAD, finish; checksums checked per chunk")
    func uploadInChunks() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bytes = Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let location = try await Self.create(client, token: alice.access, length: bytes.count,
                                                 metadata: "filename \(Data("a.bin".utf8).base64EncodedString()),filetype")
            let first = bytes[0..<4000]
            let sha1 = Data(Insecure.SHA1.hash(data: first)).base64EncodedString()
            var patch = try await Self.tus(client, .patch, location, token: alice.access,
                                           headers: Self.octets.merging(["Upload-Offset": "0", "Upload-Checksum": "sha1 \(sha1)"]) { $1 },
                                           body: Data(first))
            #expect(patch.status == .noContent)
            #expect(patch.headers[Self.field("Upload-Offset")] == "4000")
            #expect(patch.headers[Self.field("Upload-Expires")] != nil)

            let head = try await Self.tus(client, .head, location, token: alice.access)
            #expect(head.status == .ok)
            #expect(head.headers[Self.field("Upload-Offset")] == "4000")
            #expect(head.headers[Self.field("Upload-Length")] == "10000")
            #expect(head.headers[.cacheControl] == "no-store")
            #expect(head.headers[Self.field("Upload-Metadata")]?.hasPrefix("filename ") == true)

            // A corrupted chunk: 460, discarded, offset unchanged.
            let wrong = Data(Insecure.SHA1.hash(data: Data("other".utf8))).base64EncodedString()
            patch = try await Self.tus(client, .patch, location, token: alice.access,
                                       headers: Self.octets.merging(["Upload-Offset": "4000", "Upload-Checksum": "sha1 \(wrong)"]) { $1 },
                                       body: Data(bytes[4000...]))
            #expect(patch.status.code == 460)
            #expect(try await Self.tus(client, .head, location, token: alice.access).headers[Self.field("Upload-Offset")] == "4000")

            let sha256 = Data(SHA256.hash(data: bytes[4000...])).base64EncodedString()
            patch = try await Self.tus(client, .patch, location, token: alice.access,
                                       headers: Self.octets.merging(["Upload-Offset": "4000", "Upload-Checksum": "sha256 \(sha256)"]) { $1 },
                                       body: Data(bytes[4000...]))
            #expect(patch.status == .noContent)
            #expect(patch.headers[Self.field("Upload-Offset")] == "10000")
            let ready = try await Self.waitForFile(client, location, token: alice.access)
            let attachment = try #require(ready.object["attachment"] as? [String: Any])
            let sha = try #require(attachment["sha256"] as? String)
            #expect(sha == SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined())
            let stored = try Data(contentsOf: URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("files/\(sha)"))
            #expect(stored == bytes)
            #expect(attachment["filename"] as? String == "a.bin")
            #expect(attachment["url"] as? String == "/api/files/\(ready.object["file_id"] as? String ?? "")")
        }
    }

    @Test("bad requests: version, offset, content type, lengths, metadata, checksum syntax, other users")
    func badRequests() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxUploadBytes = 5000 })
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let mallory = try await client.register("mallory")
            #expect(try await Self.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "10"], version: "0.2.2").status == .preconditionFailed)
            #expect(try await Self.tus(client, .post, "/api/uploads", token: alice.access).status == .badRequest)
            #expect(try await Self.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "-1"]).status == .badRequest)
            #expect(try await Self.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "5001"]).status == .contentTooLarge)
            #expect(try await Self.tus(client, .post, "/api/uploads", token: alice.access,
                                       headers: ["Upload-Length": "10", "Upload-Metadata": "name !!notbase64"]).status == .badRequest)
            #expect(try await Self.tus(client, .post, "/api/uploads", token: alice.access,
                                       headers: ["Upload-Length": "10", "Upload-Metadata": "room_id \(Data("999".utf8).base64EncodedString())"]).status == .notFound)
            #expect(try await Self.tus(client, .post, "/api/uploads", token: nil, headers: ["Upload-Length": "10"]).status == .unauthorized)

            let location = try await Self.create(client, token: alice.access, length: 10)
            let body = Data(repeating: 7, count: 10)
            #expect(try await Self.tus(client, .patch, location, token: alice.access, headers: Self.octets.merging(["Upload-Offset": "3"]) { $1 }, body: body).status == .conflict)
            #expect(try await Self.tus(client, .patch, location, token: alice.access, headers: ["Content-Type": "application/json", "Upload-Offset": "0"], body: body).status == .unsupportedMediaType)
            #expect(try await Self.tus(client, .patch, location, token: alice.access, headers: Self.octets.merging(["Upload-Offset": "0"]) { $1 }, body: Data(repeating: 1, count: 11)).status == .contentTooLarge)
            #expect(try await Self.tus(client, .patch, location, token: alice.access, headers: Self.octets.merging(["Upload-Offset": "0", "Upload-Checksum": "crc32 AAAA"]) { $1 }, body: body).status == .badRequest)
            #expect(try await Self.tus(client, .head, location, token: alice.access).headers[Self.field("Upload-Offset")] == "0")
            // Someone else's upload does not exist for them.
            #expect(try await Self.tus(client, .head, location, token: mallory.access).status == .notFound)
            #expect(try await Self.tus(client, .patch, location, token: mallory.access, headers: Self.octets.merging(["Upload-Offset": "0"]) { $1 }, body: body).status == .notFound)
            #expect(try await Self.tus(client, .delete, location, token: mallory.access).status == .notFound)
            #expect(try await Self.tus(client, .head, "/api/uploads/nope", token: alice.access).status == .notFound)
        }
    }

    @Test("creation-with-upload, deferred length, termination")
    func extensions() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let created = try await Self.tus(client, .post, "/api/uploads", token: alice.access,
                                             headers: Self.octets.merging(["Upload-Length": "6"]) { $1 }, body: Data("hello!".utf8))
            #expect(created.status == .created)
            #expect(created.headers[Self.field("Upload-Offset")] == "6")

            let deferred = try await Self.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Defer-Length": "1"])
            let location = try #require(deferred.headers[.location])
            #expect(try await Self.tus(client, .head, location, token: alice.access).headers[Self.field("Upload-Defer-Length")] == "1")
            let patch = try await Self.tus(client, .patch, location, token: alice.access,
                                           headers: Self.octets.merging(["Upload-Offset": "0", "Upload-Length": "3"]) { $1 }, body: Data("abc".utf8))
            #expect(patch.status == .noContent)
            #expect(try await Self.tus(client, .head, location, token: alice.access).headers[Self.field("Upload-Length")] == "3")

            #expect(try await Self.tus(client, .delete, location, token: alice.access).status == .noContent)
            #expect(try await Self.tus(client, .head, location, token: alice.access).status == .notFound)
        }
    }

    @Test("GET ?wait= answers when processing ends instead of 202; bad waits are 400; missing bytes are 409 at once")
    func waitForProcessing() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let auth: HTTPFields = [.authorization: "Bearer \(alice.access)"]
            let photo = try Data(contentsOf: URL(fileURLWithPath: try await Fixtures.locationFreeCopy(of: "photo-exif-orientation-6.jpg")))
            for round in 0..<3 { // each asked at once after its last byte: the pipeline has just started
                let body = photo + Data(repeating: 0, count: round)
                // Whole-upload SHA-256 checksums (rounds 0, 1) give the pipeline the content hash.
                let checksum = round < 2 ? ["Upload-Checksum": "sha256 \(Data(SHA256.hash(data: body)).base64EncodedString())"] : [:]
                let created = try await Self.tus(client, .post, "/api/uploads", token: alice.access,
                                                 headers: Self.octets.merging(["Upload-Length": String(body.count)]) { $1 }
                                                     .merging(checksum) { $1 },
                                                 body: body)
                let location = try #require(created.headers[.location])
                var asked = ContinuousClock.now
                var ready = try await client.executeRequest(uri: location + "?wait=30", method: .get, headers: auth, body: nil)
                // With the whole test run beside it the pipeline may take longer than one wait:
                // then the 202 must have been held the full 30 s, and the client asks again.
                for _ in 0..<3 where ready.status == .accepted {
                    #expect(ContinuousClock.now - asked >= .seconds(29), "a 202 came before the wait was up")
                    asked = ContinuousClock.now
                    ready = try await client.executeRequest(uri: location + "?wait=30", method: .get, headers: auth, body: nil)
                }
                #expect(ready.status == .ok, "round \(round): \(String(buffer: ready.body))")
                let answer = try #require(try JSONSerialization.jsonObject(with: Data(buffer: ready.body)) as? [String: Any])
                #expect(answer["status"] as? String == "ready")
                let attachment = try #require(answer["attachment"] as? [String: Any])
                #expect(attachment["sha256"] as? String == SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined())
            }

            let partial = try await Self.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "1000"])
            let location = try #require(partial.headers[.location])
            let start = ContinuousClock.now
            let incomplete = try await client.executeRequest(uri: location + "?wait=30", method: .get, headers: auth, body: nil)
            #expect(incomplete.status == .conflict)
            #expect(ContinuousClock.now - start < .seconds(20)) // not held for the 30 s asked
            for bad in ["-1", "31", "soon", ""] {
                let refused = try await client.executeRequest(uri: location + "?wait=\(bad)", method: .get, headers: auth, body: nil)
                #expect(refused.status == .badRequest, "wait=\(bad)")
            }
        }
    }

    @Test("Upload-Expires and Date are IMF-fixdate in GMT (checked against Python's email.utils)")
    func httpDates() {
        let expected = [
            0: "Thu, 01 Jan 1970 00:00:00 GMT", 951_782_400: "Tue, 29 Feb 2000 00:00:00 GMT",
            1_709_164_800: "Thu, 29 Feb 2024 00:00:00 GMT", 1_795_885_899: "Sat, 28 Nov 2026 17:11:39 GMT",
            2_147_483_647: "Tue, 19 Jan 2038 03:14:07 GMT",
        ]
        for (seconds, text) in expected {
            #expect(HTTPDateText.format(seconds) == text)
            #expect(TusController.httpDate(Date(timeIntervalSince1970: Double(seconds) + 0.9)) == text)
        }
    }

    @Test("upload waiters: woken by settlement, not lost when it came first, released by their timeout")
    func waiters() async throws {
        // Timeouts are long and the bounds loose: with every suite running at once the
        // cooperative pool can be seconds late, but not 60 s.
        let waiters = UploadWaiters(remembered: 2)
        let start = ContinuousClock.now
        async let woken: Void = waiters.next("a", timeout: .seconds(60))
        try await Task.sleep(for: .milliseconds(100))
        waiters.settle("a")
        await woken
        #expect(ContinuousClock.now - start < .seconds(40))

        waiters.settle("b") // settled before anyone waited: the wait returns at once
        let early = ContinuousClock.now
        await waiters.next("b", timeout: .seconds(60))
        #expect(ContinuousClock.now - early < .seconds(40))

        let unsettled = ContinuousClock.now
        await waiters.next("c", timeout: .milliseconds(300))
        #expect(ContinuousClock.now - unsettled >= .milliseconds(300))
        #expect(ContinuousClock.now - unsettled < .seconds(40))

        waiters.settle("d")
        waiters.settle("e") // only the last two are remembered: "b" is forgotten
        let forgotten = ContinuousClock.now
        await waiters.next("b", timeout: .milliseconds(200))
        #expect(ContinuousClock.now - forgotten >= .milliseconds(200))
    }

    @Test("a writer that is committing is never overtaken; one taken over cannot commit")
    func writersCommit() async throws {
        let writers = InProcessUploadLocker()
        let first = await writers.acquire("u")
        #expect(await writers.beginCommit("u", first))
        // A second request for the same upload waits for the commit, past the half second a
        // writer that is still reading gets to stop.
        let acquired = Flag()
        let second = Task {
            let token = await writers.acquire("u")
            acquired.value.withLock { $0 = true }
            return token
        }
        try await Task.sleep(for: .milliseconds(900))
        #expect(!acquired.value.withLock { $0 }, "the second writer started while the first was committing")
        #expect(!first.isRevoked) // its last batch is written during the commit
        #expect(await !writers.isCurrent("u", first))
        await writers.release("u", first) // the commit ends
        let secondToken = await second.value
        #expect(await writers.isCurrent("u", secondToken))

        // Taken over while still reading: it may not commit, and its release frees nothing.
        let third = await writers.acquire("u")
        #expect(await !writers.beginCommit("u", secondToken))
        await writers.release("u", secondToken)
        #expect(await writers.isCurrent("u", third))
        #expect(await writers.beginCommit("u", third))
        await writers.release("u", third)
        #expect(await writers.beginCommit("u", await writers.acquire("u"))) // nothing left waiting
    }

    @Test("a writer taken over never writes again, not even a batch it had queued")
    func takenOverWriterStops() async throws {
        let files = try DiskUploadStore(dataDirectory: Fixtures.temporaryDirectory("lease").path)
        try await files.create("u")
        let writers = InProcessUploadLocker()
        let old = await writers.acquire("u")
        let oldWriter = try await files.openForAppend("u", at: 0, length: nil, state: nil, lease: old)
        try await oldWriter.append(ByteBuffer(repeating: 1, count: UploadFileWriter.batchSize))
        try await oldWriter.finish()

        let new = await writers.acquire("u") // the old request is still open: it is revoked
        #expect(old.isRevoked && !new.isRevoked)
        await #expect(throws: DomainError.uploadTakenOver) {
            try await oldWriter.append(ByteBuffer(repeating: 2, count: UploadFileWriter.batchSize))
            try await oldWriter.finish()
        }
        await oldWriter.close()
        let stored = try Data(contentsOf: URL(fileURLWithPath: files.path("u")))
        #expect(stored.count == UploadFileWriter.batchSize && stored.allSatisfy { $0 == 1 })
        await writers.release("u", old) // a late release of the old lease frees nothing
        #expect(await writers.isCurrent("u", new))
        await writers.release("u", new)
    }

    @Test("a completed upload goes through the pipeline: sniffed type, displayed size, one blob per content")
    func pipelineOnCompletion() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("photo-exif-orientation-6.jpg")))
            var fileIds = [String]()
            for name in ["IMG_0001.jpg", "copy.jpg"] {
                let created = try await Self.tus(client, .post, "/api/uploads", token: alice.access,
                                                 headers: Self.octets.merging(["Upload-Length": String(photo.count),
                                                                               "Upload-Metadata": "filename \(Data(name.utf8).base64EncodedString())"]) { $1 },
                                                 body: photo)
                let location = try #require(created.headers[.location])
                let ready = try await Self.waitForFile(client, location, token: alice.access)
                let attachment = try #require(ready.object["attachment"] as? [String: Any])
                #expect(attachment["type"] as? String == "image")
                #expect(attachment["mimeType"] as? String == "image/jpeg")
                #expect(attachment["width"] as? Int == 300 && attachment["height"] as? Int == 400)
                #expect(attachment["filename"] as? String == name)
                #expect((attachment["thumbnailUrl"] as? String)?.hasSuffix("/thumbnail") == true)
                fileIds.append(ready.object["file_id"] as? String ?? "")
            }
            #expect(Set(fileIds).count == 2)
            let blobs = try FileManager.default.contentsOfDirectory(atPath: configuration.dataDirectory + "/files")
            #expect(blobs.count == 1, "identical bytes are stored once: \(blobs)")

            // HTML named .jpg: the bytes decide, the claim is recorded.
            let html = Data("<html><script>alert(1)</script></html>".utf8)
            let created = try await Self.tus(client, .post, "/api/uploads", token: alice.access,
                                             headers: Self.octets.merging(["Upload-Length": String(html.count),
                                                                           "Upload-Metadata": "filename \(Data("cat.jpg".utf8).base64EncodedString())"]) { $1 },
                                             body: html)
            let ready = try await Self.waitForFile(client, try #require(created.headers[.location]), token: alice.access)
            let attachment = try #require(ready.object["attachment"] as? [String: Any])
            #expect(attachment["mimeType"] as? String == "text/html")
            #expect(attachment["type"] as? String == "file")
            #expect(attachment["claimedMimeType"] as? String == "image/jpeg")
            #expect(attachment["thumbnailUrl"] is NSNull)

            // An unfinished upload has no result yet.
            let unfinished = try await Self.create(client, token: alice.access, length: 10)
            #expect(try await client.call(.get, unfinished, token: alice.access).status == .conflict)
        }
    }

    @Test("an expired upload answers 410, and the sweeper deletes it and its bytes")
    func expiration() async throws {
        let configuration = try testConfiguration { $0.uploadExpirySeconds = 1 }
        let services = try await ChatServices(configuration: configuration)
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let location = try await Self.create(client, token: alice.access, length: 100)
            let id = String(location.split(separator: "/").last!)
            try await Task.sleep(for: .milliseconds(1200))
            #expect(try await Self.tus(client, .head, location, token: alice.access).status == .gone)
            let removed = try await UploadSweeper(uploads: services.uploads, uploadStore: services.uploadStore, files: nil, thumbnails: nil, interval: .seconds(60),
                                                  logger: Logger(label: "test")).sweep()
            #expect(removed == 1)
            #expect(try await Self.tus(client, .head, location, token: alice.access).status == .notFound)
            #expect(!FileManager.default.fileExists(atPath: try await services.uploadStore.localPath(id, state: nil)))
        }
    }

    @Test("orphaned blobs older than the grace period are collected; stored files and fresh blobs stay")
    func orphanCollection() async throws {
        let configuration = try testConfiguration()
        let services = try await ChatServices(configuration: configuration)
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("progressive.jpg")))
            _ = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "kept.jpg")
            let blobs = configuration.dataDirectory + "/files"
            let stored = try FileManager.default.contentsOfDirectory(atPath: blobs)
            let old = String(repeating: "a", count: 64), fresh = String(repeating: "b", count: 64)
            for name in [old, fresh] { try Data("orphan".utf8).write(to: URL(fileURLWithPath: "\(blobs)/\(name)")) }
            try Data("orphan".utf8).write(to: URL(fileURLWithPath: configuration.dataDirectory + "/decoded/\(old).jpg"))
            let twoHoursAgo = Date().addingTimeInterval(-7200)
            for path in ["\(blobs)/\(old)", "\(blobs)/\(stored[0])", configuration.dataDirectory + "/decoded/\(old).jpg"] {
                try FileManager.default.setAttributes([.modificationDate: twoHoursAgo], ofItemAtPath: path)
            }
            let sweeper = UploadSweeper(uploads: services.uploads, uploadStore: services.uploadStore, files: services.fileStore,
                                        thumbnails: services.thumbnails, interval: .seconds(60), logger: Logger(label: "test"))
            let removed = try await sweeper.collectOrphans(writtenBefore: Date().addingTimeInterval(-3600))
            #expect(removed == 2)
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: blobs)) == Set(stored + [fresh]))
        }
    }
}

/// The official tus Python client (`tuspy`) against the live server.
@Suite("tus with tuspy")
struct TuspyTests {
    static let script = #"""
        import sys
        from tusclient import client
        port, token, path, chunk, stop_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        tus = client.TusClient(f"http://127.0.0.1:{port}/api/uploads", headers={"Authorization": f"Bearer {token}"})
        # First run: stop part-way, as a dropped connection or a killed app would.
        first = tus.uploader(path, chunk_size=chunk, upload_checksum=True, metadata={"filename": "big.bin"})
        first.upload(stop_at=stop_at)
        print("stopped", first.offset, first.url, flush=True)
        # A new uploader resumes the same URL from the server's offset.
        second = tus.uploader(path, chunk_size=chunk, upload_checksum=True, url=first.url)
        print("resumed-from", second.get_offset(), flush=True)
        second.upload()
        print("done", second.offset, second.url, flush=True)
        """#

    @Test("a 50 MB file in 5 MB chunks with checksums, interrupted and resumed, arrives intact")
    func tuspyUpload() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        let folder = try Fixtures.temporaryDirectory("tuspy")
        let source = folder.appendingPathComponent("big.bin")
        try await Fixtures.writeRandomBytes(50 << 20, to: source.path)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let run = try await Tool.run("python3", ["-c", Self.script, String(port), alice.access, source.path, String(5 << 20), String(20 << 20)])
            #expect(run.status == 0, "\(run.stderr)")
            let lines = run.stdout.split(separator: "\n")
            #expect(lines.first?.hasPrefix("stopped 20971520") == true, "\(lines)")
            #expect(lines.dropFirst().first == "resumed-from 20971520")
            let done = try #require(lines.last?.split(separator: " "))
            #expect(done.first == "done" && done[1] == "\(50 << 20)")
            let location = "/api/uploads/" + String(done[2].split(separator: "/").last!)
            let ready = try await TusUploadTests.waitForFile(client, location, token: alice.access)
            let sha = try #require((ready.object["attachment"] as? [String: Any])?["sha256"] as? String)
            #expect(sha == String(try await Tool.run("sha256sum", [source.path]).trimmed.prefix(64)))
            let stored = URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("files/\(sha)").path
            #expect(try await Tool.run("sha256sum", [stored]).trimmed.prefix(64) == sha)
        }
    }
}

/// A flag set from another task.
final class Flag: Sendable {
    let value = Mutex(false)
}
