import Foundation
import Synchronization
import MediagateTestSupport
@testable import MediaPipeline
import Testing

@Suite("sniffing and names")
struct SniffingTests {
    @Test("office documents inside ZIP containers are recognised from the central directory")
    func officeInZip() throws {
        let docx = Fixtures.media("report.docx")
        let size = try FileManager.default.attributesOfItem(atPath: docx)[.size] as! Int
        #expect(ZipDocumentSniffer.documentType(ofFileAt: docx, size: size)
                == "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        let odt = Fixtures.media("notes.odt")
        let odtSize = try FileManager.default.attributesOfItem(atPath: odt)[.size] as! Int
        #expect(ZipDocumentSniffer.documentType(ofFileAt: odt, size: odtSize) == "application/vnd.oasis.opendocument.text")
    }

    @Test("a plain ZIP, a damaged ZIP and a non-ZIP are not documents")
    func notOffice() async throws {
        let folder = try Fixtures.temporaryDirectory("zip")
        let plain = folder.appendingPathComponent("plain.zip").path
        try await Tool.text("python3", ["-c", "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1],'w'); z.writestr('a.txt','hi'); z.close()", plain])
        let plainSize = try FileManager.default.attributesOfItem(atPath: plain)[.size] as! Int
        #expect(ZipDocumentSniffer.documentType(ofFileAt: plain, size: plainSize) == nil)

        // A central directory that claims to lie beyond the end of the file.
        var damaged = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("report.docx")))
        let end = damaged.count - 22
        damaged[end + 16] = 0xFF
        damaged[end + 17] = 0xFF
        damaged[end + 18] = 0xFF
        let damagedPath = folder.appendingPathComponent("damaged.docx").path
        try damaged.write(to: URL(fileURLWithPath: damagedPath))
        #expect(ZipDocumentSniffer.documentType(ofFileAt: damagedPath, size: damaged.count) == nil)

        let jpeg = Fixtures.media("progressive.jpg")
        #expect(ZipDocumentSniffer.documentType(ofFileAt: jpeg, size: 7000) == nil)
    }

    @Test("file names lose paths, controls and bidi overrides", arguments: [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("invoice\u{202E}gpj.exe", "invoicegpj.exe"),
        ("a\u{0000}b\u{0007}c\nd.txt", "abcd.txt"),
        ("\u{2066}report\u{2069}.pdf", "report.pdf"),
        ("..", "file"),
        ("", "file"),
        ("   .hidden  ", "hidden"),
        ("IMG_0001.HEIC", "IMG_0001.HEIC"),
        ("日本語のファイル.png", "日本語のファイル.png"),
    ])
    func sanitisedNames(input: String, expected: String) {
        #expect(FileName.sanitized(input) == expected)
    }

    @Test("overlong names are cut on a character boundary and keep their extension")
    func longNames() {
        let name = String(repeating: "é", count: 300) + ".jpeg"
        let cleaned = FileName.sanitized(name)
        #expect(cleaned.utf8.count <= FileName.maxBytes)
        #expect(cleaned.hasSuffix(".jpeg"))
        #expect(cleaned.hasPrefix("é"))
    }

    @Test("a mismatch between the name and the bytes is recorded only across categories")
    func claimedTypes() async throws {
        let processor = MediaProcessor(pool: MediaWorkerPool(threadCount: 1))
        let folder = try Fixtures.temporaryDirectory("claims")
        let renamed = folder.appendingPathComponent("holiday.mov").path
        try FileManager.default.copyItem(atPath: Fixtures.media("clip-h264.mp4"), toPath: renamed)
        #expect(try await processor.probe(fileAt: renamed).attachment.claimedMimeType == nil)
        let misnamed = folder.appendingPathComponent("song.mp3").path
        try FileManager.default.copyItem(atPath: Fixtures.media("three-pages.pdf"), toPath: misnamed)
        let report = try await processor.probe(fileAt: misnamed)
        #expect(report.attachment.type == .document)
        #expect(report.attachment.claimedMimeType == "audio/mpeg")
    }

    @Test("the reported file name is sanitised")
    func reportedName() async throws {
        let processor = MediaProcessor(pool: MediaWorkerPool(threadCount: 1))
        let report = try await processor.probe(fileAt: Fixtures.media("readme.txt"), filename: "../x/\u{202E}txt.exe")
        #expect(report.attachment.filename == "txt.exe")
    }

    @Test("bytes libmagic only guesses are a DOS .COM program are unknown data; an MZ header is an executable")
    func headerlessExecutable() async throws {
        let processor = MediaProcessor(pool: MediaWorkerPool(threadCount: 1))
        let folder = try Fixtures.temporaryDirectory("com-guess")
        // A short jump, then noise: what ~1 random file in 130 looks like.
        var bytes: [UInt8] = [0xEB, 0x1D, 0x07, 0x86, 0x6A, 0x9C, 0xC2, 0xD1]
        var state: UInt64 = 12345
        for _ in 0..<4088 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes.append(UInt8(state >> 56))
        }
        let noise = folder.appendingPathComponent("noise.bin").path
        try Data(bytes).write(to: URL(fileURLWithPath: noise))
        #expect(try await Tool.run("file", ["-b", "--mime-type", noise]).trimmed == "application/x-dosexec")
        #expect(try await processor.probe(fileAt: noise).attachment.mimeType == "application/octet-stream")

        let headed = folder.appendingPathComponent("program.exe").path
        try Data("MZ".utf8 + [UInt8](repeating: 0, count: 200)).write(to: URL(fileURLWithPath: headed))
        #expect(try await Tool.run("file", ["-b", "--mime-type", headed]).trimmed == "application/x-dosexec")
        #expect(try await processor.probe(fileAt: headed).attachment.mimeType == "application/x-dosexec")
    }

    @Test("a SHA-256 the caller already computed is taken as given; anything not a SHA-256 is ignored")
    func knownDigest() async throws {
        let processor = MediaProcessor(pool: MediaWorkerPool(threadCount: 1))
        let path = Fixtures.media("readme.txt")
        let computed = try #require(try await processor.probe(fileAt: path).attachment.sha256)
        #expect(try await Tool.run("sha256sum", [path]).stdout.hasPrefix(computed))
        // The contract: the file is not hashed again, so a (deliberately wrong) digest comes back.
        let given = String(repeating: "ab", count: 32)
        #expect(try await processor.probe(fileAt: path, knownSHA256: given).attachment.sha256 == given)
        for junk in ["", "abc", String(repeating: "AB", count: 32), String(repeating: "zz", count: 32), given + "00"] {
            #expect(try await processor.probe(fileAt: path, knownSHA256: junk).attachment.sha256 == computed, "\(junk)")
        }
        #expect(try await processor.probe(fileAt: path, depth: .headers, knownSHA256: given).attachment.sha256 == nil)
    }
}

@Suite("BlurHash")
struct BlurHashTests {
    /// A deterministic 24×16 test card: gradients and a bright square.
    static func pixels(width: Int, height: Int) -> [UInt8] {
        var bytes = [UInt8]()
        for y in 0..<height {
            for x in 0..<width {
                let inSquare = (8..<14).contains(x) && (4..<10).contains(y)
                bytes += inSquare ? [250, 240, 20] : [UInt8(x * 255 / width), UInt8(y * 255 / height), 128]
            }
        }
        return bytes
    }

    @Test("matches the reference Python implementation", arguments: [(4, 3), (3, 4), (1, 1), (9, 9)])
    func matchesReference(components: (Int, Int)) async throws {
        let (width, height) = (24, 16)
        let pixels = Self.pixels(width: width, height: height)
        let ours = try #require(BlurHash.encode(pixels: pixels, width: width, height: height,
                                                componentsX: components.0, componentsY: components.1))
        let rows = (0..<height).map { y in (0..<width).map { x in Array(pixels[(3 * (y * width + x))..<(3 * (y * width + x) + 3)]) } }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: rows), as: UTF8.self)
        let script = "import blurhash, json, sys; print(blurhash.encode(json.load(sys.stdin), \(components.0), \(components.1)))"
        let reference = try await Tool.run("python3", ["-c", script], input: Data(json.utf8))
        #expect(reference.status == 0, "python blurhash: \(reference.stderr)")
        #expect(ours == reference.trimmed)
        #expect(ours.count == 4 + 2 * components.0 * components.1 + 2 - 2)
    }

    @Test("refuses impossible input")
    func refuses() {
        #expect(BlurHash.encode(pixels: [1, 2], width: 4, height: 4, componentsX: 4, componentsY: 3) == nil)
        #expect(BlurHash.encode(pixels: Self.pixels(width: 2, height: 2), width: 2, height: 2, componentsX: 10, componentsY: 3) == nil)
    }
}

@Suite("worker pool")
struct WorkerPoolTests {
    @Test("a full queue answers overloaded at once instead of piling up")
    func overload() async throws {
        let pool = MediaWorkerPool(threadCount: 1, maxQueuedJobs: 0)
        let gate = DispatchSemaphore(value: 0)
        let running = Mutex(false)
        // Opens the gate whatever happens below, so a failure cannot hang the run.
        defer { gate.signal() }
        let blocker = Task { try await pool.run { _ in running.withLock { $0 = true }; gate.wait() } }
        // States, not sleeps: on a busy machine a task may start a second late.
        try await eventually { running.withLock { $0 } }
        let queued = Task { try await pool.run { _ in 42 } }
        try await eventually { pool.waitingJobCount == 1 }
        let error = await #expect(throws: MediaError.self) {
            // A bug that accepted this job would make it wait behind the gate: after 30 s the
            // gate opens, the job runs, and the expectation fails instead of hanging the run.
            try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask { try await pool.run { _ in 0 } }
                group.addTask { try await Task.sleep(for: .seconds(30)); gate.signal(); return -1 }
                defer { group.cancelAll() }
                return try await group.next() ?? -1
            }
        }
        #expect(error?.code == .overloaded)
        gate.signal()
        try await blocker.value
        #expect(try await queued.value == 42)
        pool.shutdown()
    }

    /// Waits until `condition` holds, checking every 10 ms, for at most 30 s.
    func eventually(_ condition: () -> Bool) async throws {
        for _ in 0..<3000 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
        try #require(condition())
    }

    @Test("work runs on the pool's own threads, not the caller's")
    func ownThreads() async throws {
        let pool = MediaWorkerPool(threadCount: 2)
        #expect(try await pool.run { _ in MediaWorkerPool.isWorkerThread })
        #expect(!MediaWorkerPool.isWorkerThread)
        pool.shutdown()
    }

    @Test("many files at once on many threads: libmagic cookies are never shared")
    func concurrentSniffing() async throws {
        let processor = MediaProcessor(pool: MediaWorkerPool(threadCount: 8))
        let names = Fixtures.allMedia
        var expected = [String: String]()
        for name in names {
            expected[name] = try await processor.probe(fileAt: Fixtures.media(name)).attachment.mimeType
        }
        let frozen = expected
        try await withThrowingTaskGroup(of: (String, String?).self) { group in
            for round in 0..<6 {
                for name in names.shuffled() {
                    group.addTask { (name, try await processor.probe(fileAt: Fixtures.media(name)).attachment.mimeType) }
                }
                _ = round
            }
            var count = 0
            for try await (name, mimeType) in group {
                #expect(mimeType == frozen[name])
                count += 1
            }
            #expect(count == names.count * 6)
        }
    }

    @Test("a headers-only probe agrees with the full one on type, displayed size, pages and duration, and decodes nothing")
    func headersOnly() async throws {
        let processor = MediaProcessor(pool: MediaWorkerPool(threadCount: 2))
        for name in Fixtures.allMedia {
            let full = try await processor.probe(fileAt: Fixtures.media(name)).attachment
            let quick = try await processor.probe(fileAt: Fixtures.media(name), depth: .headers).attachment
            #expect(quick.mimeType == full.mimeType, "\(name)")
            #expect(quick.type == full.type, "\(name)")
            #expect(quick.width == full.width && quick.height == full.height, "\(name)")
            #expect(quick.pageCount == full.pageCount && quick.frameCount == full.frameCount, "\(name)")
            #expect(quick.duration == full.duration && quick.codec == full.codec, "\(name)")
            #expect(quick.sha256 == nil && quick.blurhash == nil, "\(name)")
        }
        // A truncated JPEG's header is whole: only the full probe finds the damage.
        let truncated = Fixtures.hostile("truncated.jpg")
        #expect(try await processor.probe(fileAt: truncated).attachment.warning != nil)
        #expect(try await processor.probe(fileAt: truncated, depth: .headers).attachment.warning == nil)
        #expect(try await processor.probe(fileAt: Fixtures.hostile("empty.bin"), depth: .headers).error?.code == .empty)
    }
}
