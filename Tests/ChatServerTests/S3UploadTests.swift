import Foundation
import MediagateTestSupport
import Testing
@testable import ChatServer
@testable import MediagateCore
@testable import MediagateS3

/// tus uploads whose bytes are in S3, so that any node continues them: two nodes on one
/// PostgreSQL database and one bucket, each with a data directory of its own, driven by curl.
@Suite("uploads in S3, on any node")
struct S3UploadTests {
    struct Answer {
        var status: Int
        var headers: [String: String]
    }

    /// One tus request with curl: `body` is a file range sent as the request body.
    static func tus(_ port: Int, _ method: String, _ path: String, token: String, headers: [String: String] = [:],
                    body: (file: String, range: Range<Int>)? = nil, limitRate: String? = nil) async throws -> Answer {
        // --max-time: a request the server never answers fails the test instead of hanging it.
        var arguments = ["-s", "--max-time", "120", "-o", "/dev/null", "-D", "-", "-X", method, "-H", "Authorization: Bearer \(token)", "-H", "Tus-Resumable: 1.0.0"]
        for (name, value) in headers { arguments += ["-H", "\(name): \(value)"] }
        if let body {
            let slice = try Fixtures.temporaryDirectory("slice").appendingPathComponent("body").path
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: body.file))
            try handle.seek(toOffset: UInt64(body.range.lowerBound))
            try handle.read(upToCount: body.range.count)!.write(to: URL(fileURLWithPath: slice))
            try handle.close()
            arguments += ["-H", "Content-Type: application/offset+octet-stream", "--data-binary", "@\(slice)"]
        }
        if let limitRate { arguments += ["--limit-rate", limitRate] }
        let output = try await Tool.text("curl", arguments + ["http://127.0.0.1:\(port)\(path)"])
        var answer = Answer(status: 0, headers: [:])
        for line in output.split(whereSeparator: \.isNewline) {
            if line.hasPrefix("HTTP/") { answer.status = Int(line.split(separator: " ")[1]) ?? 0; answer.headers = [:]; continue }
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { answer.headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return answer
    }

    static func twoNodes(_ label: String, _ body: @escaping @Sendable (_ portA: Int, _ portB: Int, _ token: String, _ store: S3Client,
                                                                        _ configs: [ChatConfiguration]) async throws -> Void) async throws {
        let database = try await PostgresServer.freshDatabase(label)
        let blobStore = try await S3Server.blobStoreURL(label)
        let configs = try (0..<2).map { _ in
            try testConfiguration { $0.database = database; $0.blobStore = blobStore; $0.uploadPartBytes = 5 << 20 }
        }
        let nodeA = try await buildApplication(configs[0], environment: S3Server.environment)
        let nodeB = try await buildApplication(configs[1], environment: S3Server.environment)
        let client = S3Client(location: try S3Location(url: blobStore, environment: [:]),
                              credentials: S3Credentials(accessKeyId: S3Server.accessKey, secretAccessKey: S3Server.secretKey))
        try await nodeA.test(.live) { a in
            try await nodeB.test(.live) { b in
                let token = try await a.register("alice").access
                try await body(try #require(a.port), try #require(b.port), token, client, configs)
            }
        }
    }

    static func fileOfRandomBytes(_ count: Int) async throws -> (path: String, sha256: String) {
        let path = try Fixtures.temporaryDirectory("upload").appendingPathComponent("bytes").path
        try await Fixtures.writeRandomBytes(count, to: path)
        return (path, String(try await Tool.text("sha256sum", [path]).prefix(64)))
    }

    /// Waits for the upload's file and returns its id, asking node `port`.
    static func fileId(_ port: Int, _ location: String, token: String) async throws -> String {
        for _ in 0..<300 {
            let body = try await Tool.text("curl", ["-s", "--max-time", "30", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)\(location)?wait=5"])
            if let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], let id = object["file_id"] as? String {
                return id
            }
        }
        throw Tool.Failure(description: "the upload never became a file")
    }

    static func served(_ port: Int, _ fileId: String, token: String) async throws -> String {
        let out = try Fixtures.temporaryDirectory("served").appendingPathComponent("file").path
        _ = try await Tool.text("curl", ["-s", "--max-time", "60", "-o", out, "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)/api/files/\(fileId)"])
        return String(try await Tool.text("sha256sum", [out]).prefix(64))
    }

    @Test("PATCHes alternate between two nodes, 3 MiB each across 5 MiB parts: HEAD on either says what is durable, and the file is right")
    func alternatingNodes() async throws {
        try await Self.twoNodes("alternate") { portA, portB, token, s3, configs in
            let size = 13 << 20 | 12_345
            let file = try await Self.fileOfRandomBytes(size)
            let created = try await Self.tus(portA, "POST", "/api/uploads", token: token,
                                             headers: ["Upload-Length": String(size), "Upload-Metadata": "filename Ynl0ZXMuYmlu"])
            #expect(created.status == 201)
            let location = try #require(created.headers["location"]).replacingOccurrences(of: "http://127.0.0.1:\(portA)", with: "")
            var offset = 0, turn = 0
            while offset < size {
                let (port, other) = turn % 2 == 0 ? (portA, portB) : (portB, portA)
                let next = min(size, offset + (3 << 20))
                let patched = try await Self.tus(port, "PATCH", location, token: token, headers: ["Upload-Offset": String(offset)],
                                                 body: (file.path, offset..<next))
                #expect(patched.status == 204, "PATCH at \(offset) on node \(turn % 2)")
                offset = next
                let head = try await Self.tus(other, "HEAD", location, token: token)
                #expect(head.headers["upload-offset"] == String(offset), "the other node sees the stored offset")
                turn += 1
            }
            let id = try await Self.fileId(portB, location, token: token)
            #expect(try await Self.served(portA, id, token: token) == file.sha256)
            #expect(try await Self.served(portB, id, token: token) == file.sha256)
            // Nothing of the upload is left in the bucket or in either node's staging directory.
            #expect(try await s3.list(prefix: "uploads/").isEmpty)
            for config in configs {
                let staging = (try? FileManager.default.contentsOfDirectory(atPath: config.dataDirectory + "/upload-staging")) ?? []
                #expect(staging.isEmpty, "\(staging)")
            }
        }
    }

    @Test("a slow PATCH on node A is taken over by node B at once (no 423): A stores nothing, its other bytes never land, and the file is B's")
    func takeover() async throws {
        try await Self.twoNodes("takeover") { portA, portB, token, _, _ in
            let size = 8 << 20
            let file = try await Self.fileOfRandomBytes(size)
            let garbage = try await Self.fileOfRandomBytes(size)
            let created = try await Self.tus(portA, "POST", "/api/uploads", token: token,
                                             headers: ["Upload-Length": String(size), "Upload-Metadata": "filename Ynl0ZXMuYmlu"])
            let location = try #require(created.headers["location"]).replacingOccurrences(of: "http://127.0.0.1:\(portA)", with: "")
            // A client on a train: other bytes (say, a bug), slowly, through node A; then it
            // switches networks and sends the right ones through node B.
            let slow = Task {
                try await Self.tus(portA, "PATCH", location, token: token, headers: ["Upload-Offset": "0"],
                                   body: (garbage.path, 0..<size), limitRate: "1M")
            }
            try await Task.sleep(for: .seconds(6)) // past A's first 5 MiB part
            #expect(try await Self.tus(portB, "HEAD", location, token: token).headers["upload-offset"] == "0",
                    "a part sent is not an offset stored")
            let started = ContinuousClock.now
            let fast = try await Self.tus(portB, "PATCH", location, token: token, headers: ["Upload-Offset": "0"], body: (file.path, 0..<size))
            #expect(fast.status == 204 && fast.headers["upload-offset"] == String(size))
            #expect(ContinuousClock.now - started < .seconds(5), "nobody waits for A")
            let late = try await slow.value
            #expect(late.status == 409, "A's request was taken over: \(late.status)")
            let id = try await Self.fileId(portA, location, token: token)
            #expect(try await Self.served(portA, id, token: token) == file.sha256)
        }
    }

    @Test("the IETF draft on S3: one POST to node A cut after 5 s keeps what arrived (16 MiB commits and the rest); node B resumes it by HEAD and PATCH")
    func draftResumedOnAnotherNode() async throws {
        try await Self.twoNodes("s3-draft") { portA, portB, token, _, _ in
            let source = try await Self.fileOfRandomBytes(48 << 20)
            // The whole file in one request, as URLSession sends it, slowed and cut by curl itself.
            // 5 s at 6 MB/s: creation (a row, a multipart upload in S3) and the 104 fit in it
            // however busy the machine, and the 48 MiB do not.
            let cut = try await Tool.run("curl", ["-s", "--max-time", "5", "--limit-rate", "6M", "-o", "/dev/null", "-D", "-", "-X", "POST",
                                                  "-T", source.path, "-H", "Authorization: Bearer \(token)", "-H", "Expect:",
                                                  "-H", "Upload-Draft-Interop-Version: 8", "-H", "Upload-Complete: ?1",
                                                  "-H", "Content-Disposition: inline; filename=\"big.bin\"",
                                                  "http://127.0.0.1:\(portA)/api/uploads"])
            let location = try #require(cut.stdout.split(whereSeparator: \.isNewline).first { $0.lowercased().hasPrefix("location:") }
                .map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) }, "\(cut.stdout)")
            #expect(cut.stdout.contains("104 Upload Resumption Supported"))
            #expect(!cut.stdout.contains("HTTP/1.1 201"), "the request should have been cut: \(cut.stdout)")
            // Node A stores what arrived once it sees the connection gone (a tail object in S3:
            // slow on a busy machine). Its offset is watched with tus's HEAD, which, unlike the
            // draft's, does not stop a request still writing.
            var stored = -1
            for _ in 0..<300 {
                let tusHead = try await Self.tus(portA, "HEAD", location, token: token)
                let offset = Int(tusHead.headers["upload-offset"] ?? "") ?? 0
                if offset > 0, offset == stored { break }
                stored = offset
                try await Task.sleep(for: .milliseconds(200))
            }
            let draft = ["-H", "Authorization: Bearer \(token)", "-H", "Upload-Draft-Interop-Version: 8"]
            let head = try await Tool.run("curl", ["-s", "-I"] + draft + ["http://127.0.0.1:\(portB)\(location)"])
            let offset = try #require(head.stdout.split(whereSeparator: \.isNewline).first { $0.lowercased().hasPrefix("upload-offset:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }, "\(head.stdout)")
            #expect(offset == stored && offset > 0 && offset < 48 << 20, "what arrived before the cut is kept: \(offset), node A said \(stored)")
            #expect(head.stdout.lowercased().contains("upload-complete: ?0"))

            let rest = try Fixtures.temporaryDirectory("draft-rest").appendingPathComponent("rest").path
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: source.path))
            try handle.seek(toOffset: UInt64(offset))
            try handle.readToEnd()!.write(to: URL(fileURLWithPath: rest))
            try handle.close()
            let finished = try await Tool.run("curl", ["-s", "-o", "-", "-D", "-", "-X", "PATCH", "-T", rest, "-H", "Expect:",
                                                       "-H", "Upload-Complete: ?1", "-H", "Upload-Offset: \(offset)",
                                                       "-H", "Content-Type: application/partial-upload"] + draft + ["http://127.0.0.1:\(portB)\(location)"])
            #expect(finished.stdout.contains("HTTP/1.1 201") && finished.stdout.lowercased().contains("upload-complete: ?1"), "\(finished.stdout)")
            let fileId = try await Self.fileId(portA, location, token: token)
            #expect(try await Self.served(portA, fileId, token: token) == source.sha256)
        }
    }
}
