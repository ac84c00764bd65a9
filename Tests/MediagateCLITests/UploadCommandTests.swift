import Foundation
import MediagateTestSupport
import Testing

/// `mediagate login` and `mediagate upload` as processes against a real `mediagate serve`.
@Suite("mediagate upload against a live server")
struct UploadCommandTests {
    @Test("a directory of samples lands in the room: one message per file, seen in the history and on a WebSocket")
    func samplesLandInRoom() async throws {
        let gateway = try await LiveGateway.start("upload-samples")
        defer { gateway.stop() }
        try await gateway.login()
        let mode = try FileManager.default.attributesOfItem(atPath: gateway.credentialsPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let token = try await gateway.token()
        let room = try await gateway.createRoom("photos", token: token)
        let frames = try await gateway.helper("room_listener.py", [String(gateway.port), String(room), token])

        let folder = Fixtures.samples.appendingPathComponent("media").path
        let result = try await gateway.mediagate(["upload", folder, "--server", gateway.base, "--room", String(room), "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let names = Fixtures.allMedia
        let done = events(result).filter { $0["event"] as? String == "done" }
        #expect(done.count == names.count)

        // The history holds one message per file, with the server's attachment for exactly those bytes.
        let history = try await gateway.history(room: room, token: token)
        #expect(history.count == names.count)
        var byName = [String: [String: Any]]()
        for message in history { if let name = message["file_name"] as? String { byName[name] = message } }
        // The samples that say where they were taken, per ExifTool: the server stores them without it.
        let located = Set(try await Tool.run("exiftool", ["-q", "-q", "-if", "$GPSLatitude or $City or $Location", "-p", "$FileName",
                                                          Fixtures.samples.appendingPathComponent("media").path]).stdout.split(separator: "\n").map(String.init))
        #expect(located == ["photo-exif-orientation-6.jpg"])
        for name in names {
            let message = try #require(byName[name], "no message for \(name)")
            let attachment = try #require(message["attachment"] as? [String: Any])
            if located.contains(name) {
                // The hash names the bytes served, which no longer say where.
                let served = try Fixtures.temporaryDirectory("served").appendingPathComponent(name).path
                try await Tool.text("curl", ["-s", "-o", served, gateway.base + (try #require(attachment["url"] as? String))])
                #expect(attachment["sha256"] as? String == (try await sha256(of: served)), "\(name)")
                #expect(Fixtures.locationTags(try await Fixtures.exifToolTags(served)).isEmpty, "\(name)")
            } else {
                #expect(attachment["sha256"] as? String == (try await sha256(of: Fixtures.media(name))), "\(name)")
            }
            #expect(attachment["filename"] as? String == name)
            #expect((attachment["url"] as? String)?.contains("sig=") == true)
            #expect(message["content"] as? String == name)
            #expect((message["client_id"] as? String)?.hasPrefix("mediagate-upload-") == true)
        }
        #expect((byName["photo-exif-orientation-6.jpg"]?["attachment"] as? [String: Any])?["width"] as? Int != nil)
        #expect(byName["clip-h264.mp4"]?["message_type"] as? String == "text_with_video", "captioned with its name")

        // Everyone in the room saw them live.
        try await Task.sleep(for: .milliseconds(300))
        gateway.stop()
        let received = String(decoding: try await offPool { frames.readDataToEndOfFile() }, as: UTF8.self)
        let live = received.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == "message" && $0["attachment"] is [String: Any] }
        #expect(Set(live.compactMap { $0["file_name"] as? String }) == Set(names))
    }

    @Test("a rerun skips what was posted; globs, hidden files and bad files are handled per file")
    func rerunAndSelection() async throws {
        let gateway = try await LiveGateway.start("upload-rerun")
        defer { gateway.stop() }
        try await gateway.login()
        let token = try await gateway.token()
        let room = try await gateway.createRoom("docs", token: token)
        let folder = try Fixtures.temporaryDirectory("upload-rerun-files").path
        for name in ["photo-exif-orientation-6.jpg", "report.docx", "tone.wav", "clip-h264.mp4"] {
            try FileManager.default.copyItem(atPath: Fixtures.media(name), toPath: (folder as NSString).appendingPathComponent(name))
        }
        try Data("secret".utf8).write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent(".hidden.txt")))
        try FileManager.default.createDirectory(atPath: (folder as NSString).appendingPathComponent("nested"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.media("still.webp"), toPath: (folder as NSString).appendingPathComponent("nested/still.webp"))
        let arguments = ["upload", folder, "--server", gateway.base, "--room", String(room), "--json"]

        let first = try await gateway.mediagate(arguments + ["--exclude", "*.mp4"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(Set(events(first).filter { $0["event"] as? String == "done" }.compactMap { ($0["file"] as? String).map { ($0 as NSString).lastPathComponent } })
                == ["photo-exif-orientation-6.jpg", "report.docx", "tone.wav"])

        // A kill in the middle of an append leaves a torn last line: it is dropped, the rest kept.
        let journal = try #require(FileHandle(forWritingAtPath: gateway.home + "/state/mediagate/uploads.jsonl"))
        try journal.seekToEnd()
        try journal.write(contentsOf: Data(#"{"entry":{"path":"/x","upd"#.utf8))
        try journal.close()
        let second = try await gateway.mediagate(arguments + ["--recursive", "--include", "*.jpg", "--include", "*.mp4", "--include", "*.webp", "--include", "*.txt"])
        #expect(second.status == 0, "\(second.stderr)")
        let kinds = Dictionary(grouping: events(second), by: { $0["event"] as? String ?? "" })
        #expect(kinds["skipped"]?.count == 1) // the photo, already posted
        #expect(Set((kinds["done"] ?? []).compactMap { ($0["file"] as? String).map { ($0 as NSString).lastPathComponent } }) == ["clip-h264.mp4", "still.webp"])
        let summary = try #require(kinds["summary"]?.first)
        #expect(summary["uploaded"] as? Int == 2 && summary["skipped"] as? Int == 1 && summary["failed"] as? Int == 0)
        #expect(try await gateway.history(room: room, token: token).count == 5) // no message twice, no hidden file

        // Bad files fail one by one with a reason, and the exit status says so.
        try Data().write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("empty.bin")))
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: (folder as NSString).appendingPathComponent("notes.txt"))
        let bad = try await gateway.mediagate(arguments + ["--include", "empty.bin", "--include", "notes.txt"])
        #expect(bad.status == 1)
        let failures = events(bad).filter { $0["event"] as? String == "failed" }
        #expect(Set(failures.compactMap { $0["code"] as? String }) == ["empty", "forbidden_type"])
        #expect(try await gateway.history(room: room, token: token).count == 5)
    }

    @Test("wrong room, no login, a bad password, an unreachable server, bad options: clear errors and exit statuses")
    func badInvocations() async throws {
        let gateway = try await LiveGateway.start("upload-bad")
        defer { gateway.stop() }
        let file = Fixtures.media("alpha.png")

        let notLoggedIn = try await gateway.mediagate(["upload", file, "--server", gateway.base, "--room", "1"])
        #expect(notLoggedIn.status == 77)
        #expect(notLoggedIn.stderr.contains("mediagate login"))

        let wrongPassword = try await gateway.mediagate(["login", "--server", gateway.base, "-u", "alice"], input: Data("wrong one\n".utf8))
        #expect(wrongPassword.status == 77)
        #expect(wrongPassword.stderr.contains("401"))
        #expect(!FileManager.default.fileExists(atPath: gateway.credentialsPath))

        // A damaged credentials file asks for a login, and the login repairs it.
        try FileManager.default.createDirectory(atPath: gateway.home, withIntermediateDirectories: true)
        try Data("{garbage".utf8).write(to: URL(fileURLWithPath: gateway.credentialsPath))
        let damagedLogin = try await gateway.mediagate(["upload", file, "--server", gateway.base, "--room", "1"])
        #expect(damagedLogin.status == 77)
        #expect(damagedLogin.stderr.contains("damaged"))
        try await gateway.login()
        let noRoom = try await gateway.mediagate(["upload", file, "--server", gateway.base, "--room", "4242"])
        #expect(noRoom.status == 1)
        #expect(noRoom.stderr.contains("room 4242 does not exist"))

        let closedPort = try ServeCommandTests.freePort()
        let unreachable = try await gateway.mediagate(["upload", file, "--server", "http://127.0.0.1:\(closedPort)", "--room", "1", "--token", "x", "--retries", "2"])
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.contains("cannot reach"))

        for options in [["--chunk-size", "12"], ["--concurrency", "0"], ["--server", "ftp://example"], ["--chunk-size", "lots"]] {
            let invalid = try await gateway.mediagate(["upload", file, "--server", gateway.base, "--room", "1"] + options)
            #expect(invalid.status == 64, "\(options)")
        }

        let state = (gateway.home as NSString).appendingPathComponent("damaged-state.jsonl")
        try Data("{not json\n".utf8).write(to: URL(fileURLWithPath: state))
        let token = try await gateway.token()
        let room = try await gateway.createRoom("r", token: token)
        let damaged = try await gateway.mediagate(["upload", file, "--server", gateway.base, "--room", String(room), "--state", state])
        #expect(damaged.status != 0)
        #expect(damaged.stderr.contains("state file"))

        // A state file named without a directory lives in the working directory.
        let relative = try await Tool.run("sh", ["-c", "cd \"$0\" && exec \"$@\"", gateway.home, "env"] + gateway.environment
                                           + [ExecutableTests.executable, "upload", file, "--server", gateway.base, "--room", String(room),
                                              "--state", "here.jsonl", "--json"])
        #expect(relative.status == 0, "\(relative.stderr)")
        #expect(FileManager.default.fileExists(atPath: gateway.home + "/here.jsonl"))
    }

    @Test("an expired access token is renewed unnoticed; a revoked login ends with 'log in again' and status 77")
    func tokenRenewal() async throws {
        let gateway = try await LiveGateway.start("upload-tokens", config: ["accessTokenSeconds": 4])
        defer { gateway.stop() }
        try await gateway.login()
        let token = try await gateway.token()
        let room = try await gateway.createRoom("r", token: token)
        let before = try gateway.storedTokens()
        try await Task.sleep(for: .milliseconds(4200)) // the stored access token has expired

        let renewed = try await gateway.mediagate(["upload", Fixtures.media("alpha.png"), "--server", gateway.base, "--room", String(room), "--json"])
        #expect(renewed.status == 0, "\(renewed.stdout) \(renewed.stderr)")
        let after = try gateway.storedTokens()
        #expect(after["access_token"] as? String != before["access_token"] as? String)

        // Log that session out on the server: its refresh token is revoked.
        let fresh = try await gateway.token()
        let logout = try await gateway.api("POST", "/api/auth/logout", token: fresh, body: ["refresh_token": after["refresh_token"] as? String ?? ""])
        #expect(logout.status == 204)
        try await Task.sleep(for: .milliseconds(4200))
        let revoked = try await gateway.mediagate(["upload", Fixtures.media("still.webp"), "--server", gateway.base, "--room", String(room), "--json"])
        #expect(revoked.status == 77)
        #expect(revoked.stderr.contains("log in again"), "\(revoked.stderr)")
        #expect(try await gateway.history(room: room, token: try await gateway.token()).count == 1)
    }

    @Test("--strip-metadata, --max-dimension and --convert-heic change what is sent, not the files on disk")
    func preparation() async throws {
        let gateway = try await LiveGateway.start("upload-prepare")
        defer { gateway.stop() }
        try await gateway.login()
        let token = try await gateway.token()
        let room = try await gateway.createRoom("prepared", token: token)
        let folder = try Fixtures.temporaryDirectory("upload-prepare-files").path
        let names = ["photo-exif-orientation-6.jpg", "iphone.heic", "animated.gif"]
        var before = [String: String]()
        for name in names {
            try FileManager.default.copyItem(atPath: Fixtures.media(name), toPath: folder + "/" + name)
            before[name] = try await sha256(of: folder + "/" + name)
        }
        let probed = try #require(try ExecutableTests.lines(try await Tool.run(ExecutableTests.executable, ["probe", "--json", folder + "/" + names[0]]).stdout).first)
        let original = try #require(probed["attachment"] as? [String: Any])
        let (width, height) = (try #require(original["width"] as? Int), try #require(original["height"] as? Int))

        let result = try await gateway.mediagate(["upload", folder, "--server", gateway.base, "--room", String(room), "--json",
                                                  "--strip-metadata", "--max-dimension", "64", "--convert-heic"])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        var byName = [String: [String: Any]]()
        for message in try await gateway.history(room: room, token: token) {
            if let name = message["file_name"] as? String { byName[name] = message["attachment"] as? [String: Any] }
        }

        // The photo: upright (sides as displayed), at most 64 px, and no GPS, camera or orientation tags left.
        let photo = try #require(byName["photo-exif-orientation-6.jpg"])
        let (newWidth, newHeight) = (try #require(photo["width"] as? Int), try #require(photo["height"] as? Int))
        #expect(max(newWidth, newHeight) == 64)
        #expect(abs(Double(newWidth) / Double(newHeight) - Double(width) / Double(height)) < 0.05)
        let stored = gateway.data + "/stored-photo.jpg"
        let url = try #require(photo["url"] as? String)
        _ = try await Tool.run("curl", ["-s", "-o", stored, gateway.base + url])
        let tags = try await Tool.run("exiftool", ["-s", "-GPSLatitude", "-Make", "-Orientation", stored])
        #expect(tags.trimmed.isEmpty, "\(tags.stdout)")
        #expect(try await Tool.run("exiftool", ["-s", "-GPSLatitude", "-Make", folder + "/" + names[0]]).stdout.contains("GPSLatitude"))

        // HEIC became JPEG, under a .jpg name; the animated GIF went up untouched.
        let heic = try #require(byName["iphone.jpg"])
        #expect(heic["mimeType"] as? String == "image/jpeg")
        #expect(byName["animated.gif"]?["sha256"] as? String == before["animated.gif"])
        for name in names { #expect(try await sha256(of: folder + "/" + name) == before[name], "\(name) was changed on disk") }
        let prepared = gateway.home + "/state/mediagate/prepared"
        #expect((try? FileManager.default.contentsOfDirectory(atPath: prepared))?.isEmpty ?? true)
    }

    @Test("on a terminal: progress bars redrawn in place, a line per file, a summary")
    func terminalOutput() async throws {
        let gateway = try await LiveGateway.start("upload-tty")
        defer { gateway.stop() }
        try await gateway.login()
        let token = try await gateway.token()
        let room = try await gateway.createRoom("tty", token: token)
        let folder = try Fixtures.temporaryDirectory("upload-tty-files").path
        _ = try await randomFile(in: folder, name: "big.bin", bytes: 24 << 20)
        try FileManager.default.copyItem(atPath: Fixtures.media("alpha.png"), toPath: folder + "/alpha.png")
        // script(1) gives the client a pseudo-terminal as its standard output.
        let command = (gateway.environment + [ExecutableTests.executable, "upload", folder, "--server", gateway.base,
                                              "--room", String(room), "--chunk-size", "1MiB"]).joined(separator: " ")
        let result = try await Tool.run("script", ["-qec", "env " + command, "/dev/null"])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(result.stdout.contains("✓ alpha.png"))
        #expect(result.stdout.contains("✓ big.bin"))
        #expect(result.stdout.contains("total "))
        #expect(result.stdout.contains("ETA"))
        #expect(result.stdout.contains("\u{1B}[J")) // redrawn in place
        #expect(result.stdout.contains("2 uploaded, 0 already there, 0 failed of 2 files"))
        #expect(!result.stdout.contains("{\"event\""))
    }
}
