import Foundation
import MediagateClient
import MediagateTestSupport
import Testing

/// The upload client over a network that fails, across a SIGKILL of the client, and
/// interoperating with the official tus Python client (tuspy).
@Suite("upload client resilience and tus interoperability")
struct UploadResilienceTests {
    @Test("through a proxy that cuts and stalls connections, every file arrives intact")
    func faultyNetwork() async throws {
        let gateway = try await LiveGateway.start("upload-faults")
        defer { gateway.stop() }
        let token = try await gateway.token()
        let room = try await gateway.createRoom("faults", token: token)
        let proxy = try await gateway.faultProxy(["--seed", "7", "--cut", "0.4", "--stall", "0.15", "--stall-seconds", "20"])
        let folder = try Fixtures.temporaryDirectory("upload-faults-files").path
        var expected = [String: String]()
        for index in 0..<4 {
            let file = try await randomFile(in: folder, name: "part-\(index).bin", bytes: (3 << 20) + index * 777_777)
            expected["part-\(index).bin"] = file.sha256
        }
        // Without its GPS, which the server would strip (and the hash would then be of other bytes).
        let photo = try await Fixtures.locationFreeCopy(of: "photo-exif-orientation-6.jpg")
        try FileManager.default.copyItem(atPath: photo, toPath: folder + "/photo.jpg")
        expected["photo.jpg"] = try await sha256(of: photo)

        let result = try await gateway.mediagate(["upload", folder, "--server", proxy.url, "--token", token, "--room", String(room), "--json",
                                                  "--chunk-size", "512KiB", "--stall-timeout", "2", "--retries", "30"])
        #expect(result.status == 0, "\(result.stdout.suffix(2000)) \(result.stderr)")
        let stats = try proxy.stats()
        #expect(stats["cuts", default: 0] >= 1 && stats["stalls", default: 0] >= 1, "\(stats)")

        let history = try await gateway.history(room: room, token: token)
        #expect(history.count == expected.count)
        for message in history {
            let name = try #require(message["file_name"] as? String)
            #expect((message["attachment"] as? [String: Any])?["sha256"] as? String == expected[name], "\(name)")
        }
    }

    @Test("the client killed with SIGKILL mid-upload resumes on rerun: < 1.1x the bytes sent, one message")
    func killedClientResumes() async throws {
        let gateway = try await LiveGateway.start("upload-kill")
        defer { gateway.stop() }
        let token = try await gateway.token()
        let room = try await gateway.createRoom("kill", token: token)
        // The proxy holds the transfer still once 12 MiB have gone through, so the kill lands
        // mid-file however late this test gets to it (a rate limit alone once lost that race on
        // a busy machine: the whole file was in before the kill). The client's stall timeout is
        // longer than any such delay, so it does not move on through a new connection either.
        let proxy = try await gateway.faultProxy(["--stall-at", String(12 << 20), "--stall-seconds", "300"])
        let folder = try Fixtures.temporaryDirectory("upload-kill-files").path
        let file = try await randomFile(in: folder, name: "big.bin", bytes: 40 << 20)
        let arguments = ["upload", file.path, "--server", proxy.url, "--token", token, "--room", String(room), "--json",
                         "--chunk-size", "1MiB", "--stall-timeout", "120"]

        // Kill once the progress events say 8 MiB or more are in and the proxy holds the
        // transfer at 12 MiB (its stats file counts the stall): killing at the progress event
        // alone raced the last chunks still on their way (11.0 MiB through, seen in CI).
        let proxyStats = (gateway.data as NSString).appendingPathComponent("proxy-\(proxy.url.split(separator: ":").last!).json")
        let killed = try await offPool { () -> Bool in
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            client.arguments = gateway.environment + [ExecutableTests.executable] + arguments
            let output = Pipe()
            client.standardOutput = output
            client.standardError = FileHandle.nullDevice
            try client.run()
            var text = ""
            while client.isRunning {
                guard let data = try output.fileHandleForReading.read(upToCount: 256), !data.isEmpty else { break }
                text += String(decoding: data, as: UTF8.self)
                let progressed = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                    .contains { ($0["bytes"] as? Int ?? 0) >= 8 << 20 }
                if progressed { break }
            }
            for _ in 0..<6000 where client.isRunning {
                let stats = (try? Data(contentsOf: URL(fileURLWithPath: proxyStats)))
                    .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Int] }
                if (stats?["stalls"] ?? 0) >= 1 { break }
                usleep(20_000)
            }
            kill(client.processIdentifier, SIGKILL)
            while client.isRunning { usleep(10_000) }
            return client.terminationReason == .uncaughtSignal
        }
        #expect(killed)
        #expect(try await gateway.history(room: room, token: token).isEmpty)
        let sentBeforeKill = try proxy.stats()["upstream_bytes", default: 0]
        #expect(sentBeforeKill >= 12 << 20 && sentBeforeKill < 14 << 20, "\(sentBeforeKill)")

        let rerun = try await gateway.mediagate(arguments)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        let total = try proxy.stats()["upstream_bytes", default: 0]
        #expect(Double(total) < 1.1 * Double(40 << 20), "the server saw \(total) bytes for a \(40 << 20)-byte file")
        let history = try await gateway.history(room: room, token: token)
        #expect(history.count == 1)
        #expect((history.first?["attachment"] as? [String: Any])?["sha256"] as? String == file.sha256)

        let again = try await gateway.mediagate(arguments)
        #expect(events(again).contains { $0["event"] as? String == "skipped" })
        #expect(try await gateway.history(room: room, token: token).count == 1)
    }

    static let tuspy = #"""
        import sys
        from tusclient import client
        endpoint, token, path, url, chunks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] or None, int(sys.argv[5])
        tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
        uploader = tus.uploader(path, chunk_size=1 << 20, upload_checksum=True, url=url,
                                metadata={"filename": "interop.bin"})
        if chunks:
            for _ in range(chunks):
                uploader.upload_chunk()
        else:
            uploader.upload()
        print(uploader.url, uploader.offset, flush=True)
        """#

    /// What the server made of a finished upload: its attachment's SHA-256.
    static func storedSHA256(_ gateway: LiveGateway, uploadURL: String, token: String) async throws -> String? {
        for _ in 0..<100 {
            let result = try await gateway.api("GET", String(uploadURL.dropFirst(gateway.base.count)), token: token)
            if result.status == 200 {
                return ((result.json as? [String: Any])?["attachment"] as? [String: Any])?["sha256"] as? String
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    @Test("an upload started by tuspy is finished by ours, and one started by ours is finished by tuspy")
    func tuspyInteroperates() async throws {
        let gateway = try await LiveGateway.start("upload-interop")
        defer { gateway.stop() }
        let token = try await gateway.token()
        let endpoint = gateway.base + "/api/uploads"
        let folder = try Fixtures.temporaryDirectory("upload-interop-files").path
        let auth = SessionAuth(server: gateway.base, tokens: Tokens(accessToken: token), store: nil)

        // tuspy sends 3 of 6 MiB; ours finishes from the server's offset.
        let first = try await randomFile(in: folder, name: "one.bin", bytes: 6 << 20)
        let started = try await Tool.run("python3", ["-c", Self.tuspy, endpoint, token, first.path, "", "3"])
        let parts = started.trimmed.split(separator: " ")
        let url = try #require(parts.first.map(String.init), "\(started.stderr)")
        #expect(parts.last == "\(3 << 20)")
        let (finished, firstProgress, createdAnother) = try await offPool { () -> (String, Int?, Bool) in
            var firstProgress: Int?
            var createdAnother = false
            let finished = try ResumableUpload(client: TusClient(connection: APIConnection(server: gateway.base, auth: auth)))
                .upload(path: first.path, metadata: [:], resuming: url, created: { _ in createdAnother = true },
                        progress: { firstProgress = firstProgress ?? $0.bytes })
            return (finished, firstProgress, createdAnother)
        }
        #expect(finished == url && !createdAnother)
        #expect(firstProgress == 3 << 20)
        #expect(try await Self.storedSHA256(gateway, uploadURL: url, token: token) == first.sha256)

        // Ours stops after 2 MiB; tuspy resumes the same URL and finishes.
        let second = try await randomFile(in: folder, name: "two.bin", bytes: 6 << 20)
        let (created, stopped) = try await offPool { () -> (String?, Bool) in
            let ours = ResumableUpload(client: TusClient(connection: APIConnection(server: gateway.base, auth: auth)),
                                       options: .init(chunkSize: 1 << 20))
            var created: String?
            do {
                _ = try ours.upload(path: second.path, metadata: ["filename": "two.bin"], resuming: nil, created: { created = $0 },
                                    progress: { if $0.bytes >= 2 << 20 { ours.cancellation.set() } })
                return (created, false)
            } catch ClientError.cancelled {
                return (created, true)
            }
        }
        #expect(stopped)
        let handedOver = try #require(created)
        let resumed = try await Tool.run("python3", ["-c", Self.tuspy, endpoint, token, second.path, handedOver, "0"])
        #expect(resumed.trimmed == "\(handedOver) \(6 << 20)", "\(resumed.stderr)")
        #expect(try await Self.storedSHA256(gateway, uploadURL: handedOver, token: token) == second.sha256)
    }

    @Test("an upload the server forgot (terminated) starts over; a refused chunk is a clear error")
    func forgottenUploadStartsOver() async throws {
        let gateway = try await LiveGateway.start("upload-forgotten", config: ["maxUploadBytes": 4 << 20])
        defer { gateway.stop() }
        let token = try await gateway.token()
        let folder = try Fixtures.temporaryDirectory("upload-forgotten-files").path
        let file = try await randomFile(in: folder, name: "f.bin", bytes: 3 << 20)
        let auth = SessionAuth(server: gateway.base, tokens: Tokens(accessToken: token), store: nil)
        let big = try await randomFile(in: folder, name: "big.bin", bytes: 5 << 20)
        let outcome = try await offPool { () -> (old: String, gone: Bool, created: [String], url: String, overLimit: Int?, badToken: Bool) in
            let tus = TusClient(connection: APIConnection(server: gateway.base, auth: auth))
            let old = try tus.create(length: 3 << 20, metadata: ["filename": "f.bin"])
            try tus.terminate(old)
            var gone = false
            do { _ = try tus.offset(of: old) } catch ClientError.uploadGone { gone = true }
            var created = [String]()
            let url = try ResumableUpload(client: tus).upload(path: file.path, metadata: [:], resuming: old, created: { created.append($0) })

            // Over the server's limit: refused at creation with 413, not retried.
            var overLimit: Int?
            do {
                _ = try ResumableUpload(client: tus).upload(path: big.path, metadata: [:], resuming: nil)
            } catch ClientError.http(let status, _, _) {
                overLimit = status
            }
            // A wrong token and no way to renew it: login required, at once.
            let stranger = TusClient(connection: APIConnection(
                server: gateway.base, auth: SessionAuth(server: gateway.base, tokens: Tokens(accessToken: "not-a-token"), store: nil)))
            var badToken = false
            do { _ = try stranger.create(length: 10, metadata: [:]) } catch ClientError.loginRequired { badToken = true }
            return (old, gone, created, url, overLimit, badToken)
        }
        #expect(outcome.gone)
        #expect(outcome.created == [outcome.url] && outcome.url != outcome.old)
        #expect(try await Self.storedSHA256(gateway, uploadURL: outcome.url, token: token) == file.sha256)
        #expect(outcome.overLimit == 413)
        #expect(outcome.badToken)
    }
}
