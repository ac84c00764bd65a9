@testable import ChatServer
import Foundation
import HummingbirdTesting
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// Quotas and forbidden types, on both upload paths.
@Suite("upload policy")
struct UploadPolicyTests {
    static func metadata(_ pairs: [String: String]) -> String {
        pairs.sorted { $0.key < $1.key }.map { "\($0.key) \(Data($0.value.utf8).base64EncodedString())" }.joined(separator: ",")
    }

    static func errorCode(_ response: TestResponse) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    @Test("the quota counts stored files and unfinished uploads, per user, before a byte is taken")
    func quota() async throws {
        let app = try await buildApplication(try testConfiguration { $0.userQuotaBytes = 100_000 })
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let tooBig = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "100001"])
            #expect(tooBig.status == .contentTooLarge)
            #expect(Self.errorCode(tooBig) == "quota_exceeded")

            // An unfinished upload holds its declared length.
            let first = try await TusUploadTests.create(client, token: alice.access, length: 60_000)
            let second = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "50000"])
            #expect(second.status == .contentTooLarge && Self.errorCode(second) == "quota_exceeded")
            // Another user's quota is their own.
            _ = try await TusUploadTests.create(client, token: bob.access, length: 90_000)
            // Terminating frees the space.
            #expect(try await TusUploadTests.tus(client, .delete, first, token: alice.access).status == .noContent)
            _ = try await TusUploadTests.create(client, token: alice.access, length: 50_000)

            // A deferred length is capped by what is left (50,000 bytes) as the bytes arrive…
            let deferred = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Defer-Length": "1"])
            let location = try #require(deferred.headers[.location])
            let overflow = try await TusUploadTests.tus(client, .patch, location, token: alice.access,
                                                        headers: TusUploadTests.octets.merging(["Upload-Offset": "0"]) { $1 },
                                                        body: Data(count: 60_000))
            #expect(overflow.status == .contentTooLarge && Self.errorCode(overflow) == "quota_exceeded")
            let head = try await TusUploadTests.tus(client, .head, location, token: alice.access)
            #expect(head.headers[TusUploadTests.field("Upload-Offset")] == "0", "nothing of the refused body is kept")
            // …and declaring it checks the quota too.
            let declared = try await TusUploadTests.tus(client, .patch, location, token: alice.access,
                                                        headers: TusUploadTests.octets.merging(["Upload-Offset": "0", "Upload-Length": "70000"]) { $1 },
                                                        body: Data(count: 10))
            #expect(declared.status == .contentTooLarge && Self.errorCode(declared) == "quota_exceeded")
            let fits = try await TusUploadTests.tus(client, .patch, location, token: alice.access,
                                                    headers: TusUploadTests.octets.merging(["Upload-Offset": "0", "Upload-Length": "40000"]) { $1 },
                                                    body: Data(count: 10))
            #expect(fits.status == .noContent)
        }
    }

    @Test("forbidden types: refused at creation when claimed, and after sniffing when disguised")
    func forbiddenTypes() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let claimed = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access,
                                                       headers: ["Upload-Length": "100",
                                                                 "Upload-Metadata": Self.metadata(["filename": "setup.exe", "filetype": "application/x-dosexec"])])
            #expect(claimed.status == .unsupportedMediaType && Self.errorCode(claimed) == "forbidden_type")

            // A real ELF executable posing as a text file.
            let program = try Data(contentsOf: URL(fileURLWithPath: "/bin/ls"))
            let created = try await TusUploadTests.tus(
                client, .post, "/api/uploads", token: alice.access,
                headers: TusUploadTests.octets.merging(["Upload-Length": String(program.count),
                                                        "Upload-Metadata": Self.metadata(["filename": "notes.txt", "filetype": "text/plain"])]) { $1 },
                body: program)
            #expect(created.status == .created)
            let location = try #require(created.headers[.location])
            var result = try await client.call(.get, location, token: alice.access)
            for _ in 0..<250 where result.status == .accepted {
                try await Task.sleep(for: .milliseconds(20))
                result = try await client.call(.get, location, token: alice.access)
            }
            #expect(result.status == .unprocessableContent)
            #expect(result.errorCode == "forbidden_type")
            let id = String(location.split(separator: "/").last!)
            #expect(!FileManager.default.fileExists(atPath: configuration.dataDirectory + "/uploads/" + id))
            #expect(try FileManager.default.contentsOfDirectory(atPath: configuration.dataDirectory + "/files").isEmpty)

            // The refused upload no longer counts against the quota.
            let services = try await ChatServices(configuration: configuration)
            #expect(try await services.uploads.bytesInUse(userId: Int64(alice.id), at: Date()) == 0)
        }
    }

    @Test("a claimed filetype that disagrees with the bytes is recorded, one that agrees is not")
    func claimedTypeRecorded() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("photo-exif-orientation-6.jpg")))
            for (claim, recorded) in [("image/png", "image/png"), ("image/jpeg", nil)] as [(String, String?)] {
                let created = try await TusUploadTests.tus(
                    client, .post, "/api/uploads", token: alice.access,
                    headers: TusUploadTests.octets.merging(["Upload-Length": String(photo.count),
                                                            "Upload-Metadata": Self.metadata(["filename": "photo.jpg", "filetype": claim])]) { $1 },
                    body: photo)
                let ready = try await TusUploadTests.waitForFile(client, try #require(created.headers[.location]), token: alice.access)
                let attachment = try #require(ready.object["attachment"] as? [String: Any])
                #expect(attachment["mimeType"] as? String == "image/jpeg")
                #expect(attachment["claimedMimeType"] as? String == recorded, "claimed \(claim)")
            }
        }
    }

    @Test("multipart uploads obey the same quota and type policy")
    func multipart() async throws {
        let app = try await buildApplication(try testConfiguration { $0.userQuotaBytes = 200_000 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let url = "http://127.0.0.1:\(port)/api/upload-file"
            let auth = ["-H", "Authorization: Bearer \(alice.access)"]

            let program = try await MultipartUploadTests.curl(auth + ["-F", "file=@/bin/ls;filename=readme.txt;type=text/plain", url])
            #expect(program.status == 415)
            #expect((program.body["error"] as? [String: Any])?["code"] as? String == "forbidden_type")

            // The refused 151 KB did not count: 150,000 bytes of noise fit, then four 10 KB photos, not five.
            let noise = try Fixtures.temporaryDirectory("policy").appendingPathComponent("noise.bin").path
            try await Fixtures.writeRandomBytes(150_000, to: noise)
            #expect(try await MultipartUploadTests.curl(auth + ["-F", "file=@\(noise)", url]).status == 200)
            let photo = Fixtures.media("photo-exif-orientation-6.jpg") // 10,426 bytes
            for _ in 0..<4 {
                #expect(try await MultipartUploadTests.curl(auth + ["-F", "file=@\(photo)", url]).status == 200)
            }
            let over = try await MultipartUploadTests.curl(auth + ["-F", "file=@\(photo)", url])
            #expect(over.status == 413)
            #expect((over.body["error"] as? [String: Any])?["code"] as? String == "quota_exceeded")
        }
    }
}
