import ChatServer
import Foundation
import HummingbirdTesting
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// The seed article's `POST /api/upload-file`, driven by curl against the live server.
@Suite("multipart upload")
struct MultipartUploadTests {
    static func curl(_ arguments: [String]) async throws -> (status: Int, body: [String: Any]) {
        let output = try await Tool.run("curl", ["-s", "-o", "-", "-w", "\n%{http_code}"] + arguments)
        let lines = output.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let body = lines.dropLast().joined(separator: "\n")
        return (Int(lines.last ?? "") ?? 0, (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:])
    }

    @Test("a photo uploads as the seed's client sends it; limits, types and fields are checked")
    func upload() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxMultipartBytes = 100_000 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let url = "http://127.0.0.1:\(port)/api/upload-file"
            let auth = ["-H", "Authorization: Bearer \(alice.access)"]

            let photo = Fixtures.media("photo-exif-orientation-6.jpg")
            let ok = try await Self.curl(auth + ["-F", "file=@\(photo);filename=IMG_0001.jpg;type=image/jpeg", url])
            #expect(ok.status == 200, "\(ok.body)")
            // `filename` is the capability name; the sent name is the attachment's.
            let capability = try #require(ok.body["filename"] as? String)
            #expect(capability.hasSuffix(".jpg") && capability.count == 26, "\(capability)")
            #expect(ok.body["file_size"] as? Int == (try Data(contentsOf: URL(fileURLWithPath: photo))).count)
            #expect(ok.body["mime_type"] as? String == "image/jpeg" && ok.body["message"] is String)
            #expect(ok.body["file_url"] as? String == ok.body["url"] as? String)
            let attachment = try #require(ok.body["attachment"] as? [String: Any])
            #expect(attachment["filename"] as? String == "IMG_0001.jpg")
            #expect(attachment["mime_type"] as? String == "image/jpeg" && attachment["mimeType"] as? String == "image/jpeg")
            #expect(attachment["type"] as? String == "image")
            #expect(attachment["width"] as? Int == 300 && attachment["height"] as? Int == 400)
            let signed = try #require(ok.body["url"] as? String)
            let fetched = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)\(signed)"])
            #expect(fetched.stdout == "200")
            // The capability name reads the file with no header; a near miss does not.
            let byName = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                                     "http://127.0.0.1:\(port)/api/files/\(capability)"])
            #expect(byName.stdout == "200 \(try Data(contentsOf: URL(fileURLWithPath: photo)).count)")
            let wrong = String(capability.dropFirst()) + "x"
            let missed = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/api/files/\(wrong)"])
            #expect(missed.stdout == "404")

            let big = try Fixtures.temporaryDirectory("multipart").appendingPathComponent("big.bin").path
            try await Fixtures.writeRandomBytes(200_000, to: big)
            #expect(try await Self.curl(auth + ["-F", "file=@\(big)", url]).status == 413)
            #expect(try await Self.curl(auth + ["-F", "other=@\(photo)", url]).status == 400)
            #expect(try await Self.curl(auth + ["-H", "Content-Type: application/json", "-d", "{}", url]).status == 415)
            #expect(try await Self.curl(["-F", "file=@\(photo)", url]).status == 401)
            // A name with a path and a bidi override comes back sanitised.
            let sneaky = try await Self.curl(auth + ["-F", "file=@\(photo);filename=../../x\u{202E}gpj.exe", url])
            #expect(sneaky.status == 200)
            #expect((sneaky.body["attachment"] as? [String: Any])?["filename"] as? String == "xgpj.exe")
            #expect((sneaky.body["filename"] as? String)?.hasSuffix(".exe") == true)
        }
    }

    @Test("curl's `Expect: 100-continue` is answered at once; 2 MB of random bytes (CRs everywhere) arrive intact")
    func expectContinue() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let file = try Fixtures.temporaryDirectory("expect").appendingPathComponent("two-mib.bin").path
            try await Fixtures.writeRandomBytes(2_000_000, to: file)
            // curl adds the header itself for bodies over 1 MiB; -v shows the interim answer.
            let answer = file + ".json"
            let result = try await Tool.run("curl", ["-sv", "-o", answer, "-H", "Authorization: Bearer \(alice.access)",
                                                      "-F", "file=@\(file)", "http://127.0.0.1:\(port)/api/upload-file"])
            #expect(result.stderr.contains("> Expect: 100-continue"))
            #expect(result.stderr.contains("< HTTP/1.1 100 Continue"))
            #expect(!result.stderr.contains("Done waiting for 100-continue"))
            #expect(result.stderr.contains("< HTTP/1.1 200"))
            let body = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: answer))) as? [String: Any])
            let stored = (body["attachment"] as? [String: Any])?["sha256"] as? String
            #expect(stored == String(try await Tool.run("sha256sum", [file]).stdout.prefix(64)))
        }
    }

    @Test("with capabilityURLs off, the upload's name reads nothing; signed URLs and tokens still do")
    func capabilityNamesOff() async throws {
        let app = try await buildApplication(try testConfiguration { $0.capabilityURLs = false })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let photo = Fixtures.media("photo-exif-orientation-6.jpg")
            let ok = try await Self.curl(["-H", "Authorization: Bearer \(alice.access)", "-F", "file=@\(photo)",
                                          "http://127.0.0.1:\(port)/api/upload-file"])
            #expect(ok.status == 200)
            let name = try #require(ok.body["filename"] as? String)
            let signed = try #require(ok.body["url"] as? String)
            func status(_ path: String, _ extra: [String] = []) async throws -> String {
                try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}"] + extra + ["http://127.0.0.1:\(port)\(path)"]).stdout
            }
            #expect(try await status("/api/files/\(name)") == "404")
            #expect(try await status("/api/files/\(name)", ["-H", "Authorization: Bearer \(alice.access)"]) == "404")
            #expect(try await status("/api/files/\(name)/thumbnail") == "404")
            #expect(try await status(signed) == "200")
        }
    }
}
