import Foundation
import MediagateTestSupport
import Testing

/// `mediagate serve` killed with SIGKILL in the middle of a tus upload, restarted, resumed.
@Suite("tus upload across a server crash")
struct UploadCrashTests {
    static let upload = #"""
        import sys, threading
        from tusclient import client
        port, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
        url = sys.argv[4] if len(sys.argv) > 4 else None
        tus = client.TusClient(f"http://127.0.0.1:{port}/api/uploads", headers={"Authorization": f"Bearer {token}"})
        uploader = tus.uploader(path, chunk_size=1 << 20, upload_checksum=True, url=url)
        if uploader.url is None:
            uploader.set_url(uploader.create_url())  # create now, so the test learns the URL first
        print("url", uploader.url, "offset", uploader.offset, flush=True)
        try:
            uploader.upload()
            print("done", uploader.offset, flush=True)
        except Exception as error:
            print("interrupted", uploader.offset, type(error).__name__, flush=True)
        """#

    @Test("SIGKILL mid-upload: the restarted server resumes from durable bytes and the file is intact")
    func killAndResume() async throws {
        let data = try Fixtures.temporaryDirectory("crash").path
        let source = (data as NSString).appendingPathComponent("source.bin")
        try await Fixtures.writeRandomBytes(64 << 20, to: source)
        let added = try await Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(added.status == 0)
        let port = try ServeCommandTests.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try await ServeCommandTests.startServer(dataDirectory: data, port: port)
        let login = try await ServeCommandTests.curl(["-H", "Content-Type: application/json", "-d", #"{"username":"alice","password":"a long password"}"#, "\(base)/api/auth/login"])
        let token = try #require(login.body["access_token"] as? String)

        // Upload in the background; kill the server as soon as some, not all, bytes are in.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["python3", "-c", Self.upload, String(port), token, source]
        let output = Pipe()
        client.standardOutput = output
        client.standardError = FileHandle.nullDevice
        try client.run()
        let reader = output.fileHandleForReading
        let firstLine = try await offPool { () -> String in
            var lineBytes = Data()
            while let byte = try reader.read(upToCount: 1), !byte.isEmpty, byte != Data([0x0A]) {
                lineBytes.append(byte)
            }
            return String(decoding: lineBytes, as: UTF8.self)
        }
        let url = try #require(firstLine.split(separator: " ").dropFirst().first.map(String.init), "\(firstLine)")
        var offsetAtKill = 0
        for _ in 0..<2000 {
            let head = try await Tool.run("curl", ["-s", "-I", "-H", "Tus-Resumable: 1.0.0", "-H", "Authorization: Bearer \(token)", url])
            offsetAtKill = head.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("upload-offset:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            if offsetAtKill > 0 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        kill(server.processIdentifier, SIGKILL)
        await server.exited()
        await client.exited()
        #expect(server.terminationReason == .uncaughtSignal)
        #expect(offsetAtKill > 0)

        // Restarted: the offset it reports counts only bytes that are on disk and correct.
        let restarted = try await ServeCommandTests.startServer(dataDirectory: data, port: port)
        defer { if restarted.isRunning { restarted.terminate() } }
        let head = try await Tool.run("curl", ["-s", "-I", "-H", "Tus-Resumable: 1.0.0", "-H", "Authorization: Bearer \(token)", url])
        let durable = head.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("upload-offset:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? -1
        #expect(durable >= 0 && durable < 64 << 20, "the kill should land mid-upload (offset \(durable))")
        let id = String(url.split(separator: "/").last!)
        let stored = ((data as NSString).appendingPathComponent("uploads") as NSString).appendingPathComponent(id)
        let prefixMatches = try await Tool.run("sh", ["-c", "cmp -n \(durable) '\(stored)' '\(source)'"])
        #expect(prefixMatches.status == 0, "the durable prefix differs from the source")

        let resumed = try await Tool.run("python3", ["-c", Self.upload, String(port), token, source, url])
        #expect(resumed.stdout.contains("done \(64 << 20)"), "\(resumed.stdout) \(resumed.stderr)")
        // The completed upload becomes a stored file whose hash is the source's.
        let expected = String(try await Tool.text("sha256sum", [source]).prefix(64))
        var attachmentHash: String?
        for _ in 0..<300 where attachmentHash == nil {
            let result = try await ServeCommandTests.curl(["-H", "Authorization: Bearer \(token)", url])
            attachmentHash = (result.body["attachment"] as? [String: Any])?["sha256"] as? String
            if attachmentHash == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(attachmentHash == expected)
        let blob = ((data as NSString).appendingPathComponent("files") as NSString).appendingPathComponent(expected)
        #expect(try await Tool.text("sha256sum", [blob]).prefix(64) == expected)
    }
}
