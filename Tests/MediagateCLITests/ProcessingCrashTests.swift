import Foundation
import MediagateTestSupport
import Testing

/// `mediagate serve` killed with SIGKILL while the pipeline processes a completed upload: the
/// processing job is in the database, and once its lease ends the restarted server takes it
/// again and the upload becomes a file.
@Suite("processing across a server crash")
struct ProcessingCrashTests {
    /// Waits until a worker holds the upload's processing job and no file exists yet; prints
    /// `leased` then, or `timeout`.
    static let waitForLease = #"""
        import sqlite3, sys, time
        path, upload = sys.argv[1], sys.argv[2]
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
                row = db.execute("SELECT jobs.leased_by, uploads.file_id FROM jobs JOIN uploads ON uploads.id = jobs.upload_id "
                                 "WHERE jobs.upload_id = ?", (upload,)).fetchone()
                db.close()
                if row and row[0] and row[1] is None:
                    print("leased", flush=True)
                    sys.exit(0)
            except sqlite3.Error:
                pass
            time.sleep(0.01)
        print("timeout", flush=True)
        """#

    @Test("SIGKILL mid-processing: the job outlives the process and the restarted server stores the file")
    func killDuringProcessing() async throws {
        let data = try Fixtures.temporaryDirectory("processing-crash").path
        // An interlaced 16-bit 7000 × 7000 PNG (294 MB decoded whole): seconds of processing.
        let png = (data as NSString).appendingPathComponent("huge16.png")
        try await Tool.text("vips", ["black", png + ".8.v", "7000", "7000", "--bands", "3"])
        try await Tool.text("vips", ["cast", png + ".8.v", png + ".16.v", "ushort"])
        try await Tool.text("vips", ["copy", png + ".16.v", png + ".v", "--interpretation", "rgb16"])
        try await Tool.text("vips", ["pngsave", png + ".v", png, "--interlace"])
        for suffix in [".8.v", ".16.v", ".v"] { try FileManager.default.removeItem(atPath: png + suffix) }
        let size = try #require(try FileManager.default.attributesOfItem(atPath: png)[.size] as? Int)

        let added = try await Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(added.status == 0)
        let config = (data as NSString).appendingPathComponent("config.json")
        try Data(#"{"processingLeaseSeconds": 3}"#.utf8).write(to: URL(fileURLWithPath: config))
        let port = try ServeCommandTests.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try await ServeCommandTests.startServer(dataDirectory: data, port: port, extraArguments: ["--config", config])
        let login = try await ServeCommandTests.curl(["-H", "Content-Type: application/json", "-d", #"{"username":"alice","password":"a long password"}"#, "\(base)/api/auth/login"])
        let token = try #require(login.body["access_token"] as? String)

        // One request: creation with the whole upload (tus creation-with-upload), by curl.
        let created = try await Tool.run("curl", ["-s", "-D", "-", "-o", "/dev/null", "-X", "POST", "-H", "Tus-Resumable: 1.0.0",
                                                  "-H", "Authorization: Bearer \(token)", "-H", "Upload-Length: \(size)",
                                                  "-H", "Upload-Metadata: filename aHVnZTE2LnBuZw==",
                                                  "-H", "Content-Type: application/offset+octet-stream", "--data-binary", "@\(png)",
                                                  "\(base)/api/uploads"])
        let location = try #require(created.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("location:") }
            .map { $0.dropFirst("location:".count).trimmingCharacters(in: .whitespaces) }, "\(created.stdout)")
        let upload = String(location.split(separator: "/").last!)
        let database = (data as NSString).appendingPathComponent("chat.sqlite")
        let leased = try await Tool.run("python3", ["-c", Self.waitForLease, database, upload])
        kill(server.processIdentifier, SIGKILL)
        await server.exited()
        #expect(leased.stdout.contains("leased"), "\(leased.stdout) \(leased.stderr)")

        // Dead mid-processing: the job is still there, leased by the dead process, and no file.
        let state = try await Tool.text("python3", ["-c", """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            print(db.execute("SELECT jobs.attempts, jobs.leased_by IS NOT NULL, uploads.file_id IS NULL FROM jobs "
                             "JOIN uploads ON uploads.id = jobs.upload_id WHERE jobs.upload_id = ?", (sys.argv[2],)).fetchone())
            """, database, upload])
        #expect(state.trimmingCharacters(in: .whitespacesAndNewlines) == "(1, 1, 1)", "\(state)")

        let restarted = try await ServeCommandTests.startServer(dataDirectory: data, port: port, extraArguments: ["--config", config])
        defer { if restarted.isRunning { restarted.terminate() } }
        var ready: [String: Any] = [:]
        for _ in 0..<6 where ready["status"] as? String != "ready" {
            ready = try await ServeCommandTests.curl(["-H", "Authorization: Bearer \(token)", "\(base)\(location)?wait=10"]).body
        }
        let attachment = ready["attachment"] as? [String: Any]
        #expect(ready["status"] as? String == "ready", "\(ready)")
        #expect(attachment?["type"] as? String == "image" && attachment?["width"] as? Int == 7000, "\(ready)")
        let left = try await Tool.text("python3", ["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM jobs').fetchone()[0])",
                                                   database])
        #expect(left.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }
}
