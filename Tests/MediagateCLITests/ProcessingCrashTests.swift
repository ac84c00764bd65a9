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

    /// An interlaced 16-bit 7000 × 7000 PNG (294 MB decoded whole): seconds of processing.
    static func slowPicture(in folder: String) async throws -> (path: String, size: Int) {
        let png = (folder as NSString).appendingPathComponent("huge16.png")
        try await Tool.text("vips", ["black", png + ".8.v", "7000", "7000", "--bands", "3"])
        try await Tool.text("vips", ["cast", png + ".8.v", png + ".16.v", "ushort"])
        try await Tool.text("vips", ["copy", png + ".16.v", png + ".v", "--interpretation", "rgb16"])
        try await Tool.text("vips", ["pngsave", png + ".v", png, "--interlace"])
        for suffix in [".8.v", ".16.v", ".v"] { try FileManager.default.removeItem(atPath: png + suffix) }
        return (png, try #require(try FileManager.default.attributesOfItem(atPath: png)[.size] as? Int))
    }

    /// Sends `path` as one tus creation-with-upload request, by curl; returns the upload's path.
    static func upload(_ path: String, size: Int, to base: String, token: String) async throws -> String {
        let created = try await Tool.run("curl", ["-s", "-D", "-", "-o", "/dev/null", "-X", "POST", "-H", "Tus-Resumable: 1.0.0",
                                                  "-H", "Authorization: Bearer \(token)", "-H", "Upload-Length: \(size)",
                                                  "-H", "Upload-Metadata: filename aHVnZTE2LnBuZw==",
                                                  "-H", "Content-Type: application/offset+octet-stream", "--data-binary", "@\(path)",
                                                  "\(base)/api/uploads"])
        return try #require(created.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("location:") }
            .map { $0.dropFirst("location:".count).trimmingCharacters(in: .whitespaces) }, "\(created.stdout)")
    }

    static func login(_ base: String) async throws -> String {
        let login = try await ServeCommandTests.curl(["-H", "Content-Type: application/json", "-d", #"{"username":"alice","password":"a long password"}"#,
                                                      "\(base)/api/auth/login"])
        return try #require(login.body["access_token"] as? String)
    }

    /// Asks `GET location?wait=10` until the upload is ready (at most a minute).
    static func waitUntilReady(_ base: String, _ location: String, token: String) async throws -> [String: Any] {
        var ready: [String: Any] = [:]
        for _ in 0..<6 where ready["status"] as? String != "ready" {
            ready = try await ServeCommandTests.curl(["-H", "Authorization: Bearer \(token)", "\(base)\(location)?wait=10"]).body
        }
        return ready
    }

    @Test("SIGKILL mid-processing: the job outlives the process and the restarted server stores the file")
    func killDuringProcessing() async throws {
        let data = try Fixtures.temporaryDirectory("processing-crash").path
        let (png, size) = try await Self.slowPicture(in: data)

        let added = try await Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(added.status == 0)
        let config = (data as NSString).appendingPathComponent("config.json")
        try Data(#"{"processingLeaseSeconds": 3}"#.utf8).write(to: URL(fileURLWithPath: config))
        let port = try ServeCommandTests.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try await ServeCommandTests.startServer(dataDirectory: data, port: port, extraArguments: ["--config", config])
        let token = try await Self.login(base)
        let location = try await Self.upload(png, size: size, to: base, token: token)
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
        let ready = try await Self.waitUntilReady(base, location, token: token)
        let attachment = ready["attachment"] as? [String: Any]
        #expect(ready["status"] as? String == "ready", "\(ready)")
        #expect(attachment?["type"] as? String == "image" && attachment?["width"] as? Int == 7000, "\(ready)")
        let left = try await Tool.text("python3", ["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM jobs').fetchone()[0])",
                                                   database])
        #expect(left.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test("two nodes on PostgreSQL: node A SIGKILLed mid-processing, node B takes the job once its lease ends")
    func otherNodeTakesOver() async throws {
        let folder = try Fixtures.temporaryDirectory("processing-cluster").path
        let (png, size) = try await Self.slowPicture(in: folder)
        let database = try await PostgresServer.freshDatabase("processing")
        let config = (folder as NSString).appendingPathComponent("config.json")
        try Data(#"{"processingLeaseSeconds": 3}"#.utf8).write(to: URL(fileURLWithPath: config))
        // Until blobs and uploads live in object storage (#15), the nodes share a file store the
        // way a deployment would share a volume: here, one directory.
        let shared = (folder as NSString).appendingPathComponent("shared")
        let added = try await Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", shared, "--database", database],
                                       input: Data("a long password\n".utf8))
        #expect(added.status == 0, "\(added.stderr)")
        let portA = try ServeCommandTests.freePort(), portB = try ServeCommandTests.freePort()
        let nodeA = try await ServeCommandTests.startServer(dataDirectory: shared, port: portA,
                                                            extraArguments: ["--database", database, "--config", config])
        let nodeB = try await ServeCommandTests.startServer(dataDirectory: shared, port: portB,
                                                            extraArguments: ["--database", database, "--config", config])
        defer { if nodeB.isRunning { nodeB.terminate() } }
        // Node B's idle workers would race A's for the job: A is given it alone by pausing B.
        kill(nodeB.processIdentifier, SIGSTOP)
        let baseA = "http://127.0.0.1:\(portA)", baseB = "http://127.0.0.1:\(portB)"
        let token = try await Self.login(baseA)
        let location = try await Self.upload(png, size: size, to: baseA, token: token)
        let upload = String(location.split(separator: "/").last!)
        var leasedBy = ""
        for _ in 0..<3000 where leasedBy.isEmpty {
            leasedBy = try await PostgresServer.psql(database, "SELECT COALESCE(leased_by, '') FROM jobs WHERE upload_id = '\(upload)'")
            if leasedBy.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        }
        kill(nodeA.processIdentifier, SIGKILL)
        await nodeA.exited()
        kill(nodeB.processIdentifier, SIGCONT)
        #expect(leasedBy.hasSuffix(":\(nodeA.processIdentifier)"), "leased by \(leasedBy)")
        #expect(try await PostgresServer.psql(database, "SELECT file_id IS NULL FROM uploads WHERE id = '\(upload)'") == "t")

        // Node B, which never saw the upload, finishes it.
        let ready = try await Self.waitUntilReady(baseB, location, token: token)
        #expect(ready["status"] as? String == "ready", "\(ready)")
        let attempts = try await PostgresServer.psql(database, "SELECT count(*) FROM jobs")
        #expect(attempts == "0")
    }
}
