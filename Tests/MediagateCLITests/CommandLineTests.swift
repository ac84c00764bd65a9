import ArgumentParser
import Foundation
import MediagateTestSupport
@testable import mediagate
import Testing

@Suite("argument parsing")
struct ArgumentParsingTests {
    @Test("probe options")
    func probe() throws {
        let command = try Probe.parse(["samples", "-r", "--json", "--thumbnails", "out", "--size", "100x50", "--fit", "cover", "--format", "webp"])
        #expect(command.paths == ["samples"])
        #expect(command.recursive && command.json)
        #expect(command.thumbnails == "out")
        #expect(command.size == BoxSize(width: 100, height: 50))
        #expect(command.fit == .cover && command.format == .webp)
        #expect(try Probe.parse(["x", "--size", "64"]).size == BoxSize(width: 64, height: 64))
    }

    @Test("bad values are refused with a usage error", arguments: [
        ["x", "--size", "0x10"], ["x", "--size", "ax1"], ["x", "--size", "99999"], ["x", "--fit", "stretch"],
        ["x", "--format", "gif"], ["x", "--max-megapixels", "-1"], ["x", "--time-limit", "0"], ["x", "--jobs", "0"], [],
    ])
    func refused(arguments: [String]) {
        #expect(throws: (any Error).self) { _ = try Probe.parse(arguments) }
    }

    @Test("thumbnail takes its format from the output's extension unless told")
    func thumbnailFormat() throws {
        #expect(try MakeThumbnail.parse(["in.jpg", "-o", "out.webp"]).resolvedFormat == .webp)
        #expect(try MakeThumbnail.parse(["in.jpg", "-o", "out.PNG"]).resolvedFormat == .png)
        #expect(try MakeThumbnail.parse(["in.jpg", "-o", "out.bin"]).resolvedFormat == .jpeg)
        #expect(try MakeThumbnail.parse(["in.jpg", "-o", "out.png", "--format", "jpeg"]).resolvedFormat == .jpeg)
        #expect(throws: (any Error).self) { _ = try MakeThumbnail.parse(["in.jpg", "-o", "o.jpg", "--quality", "0"]) }
        #expect(throws: (any Error).self) { _ = try MakeThumbnail.parse(["in.jpg"]) }
    }

    @Test("root help lists the commands")
    func help() {
        let help = Mediagate.helpMessage(columns: 100)
        #expect(help.contains("OVERVIEW: Media processing and upload gateway for real-time chat."))
        #expect(help.contains("probe"))
        #expect(help.contains("thumbnail"))
    }
}

/// The built `mediagate` executable, run as a user would.
@Suite("mediagate as a process")
struct ExecutableTests {
    /// The executable sits beside the test bundle in SwiftPM's build folder.
    static let executable: String = {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mediagate"),
            Bundle.main.bundleURL.appendingPathComponent("mediagate"),
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("mediagate"),
            Fixtures.packageRoot.appendingPathComponent(".build/debug/mediagate"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }?.path ?? "mediagate"
    }()

    static func lines(_ text: String) throws -> [[String: Any]] {
        try text.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test("probe --json over samples/media: one line per file, all analysed, exit 0")
    func probeMedia() async throws {
        let result = try await Tool.run(Self.executable, ["probe", "--json", Fixtures.samples.appendingPathComponent("media").path])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = try Self.lines(result.stdout)
        #expect(lines.count == Fixtures.allMedia.count)
        for line in lines {
            #expect(line["error"] is NSNull, "\(line)")
            let attachment = try #require(line["attachment"] as? [String: Any])
            #expect(attachment["sha256"] is String)
            #expect(attachment["type"] is String)
        }
        // Input order is kept even though files are probed in parallel.
        let paths = lines.compactMap { $0["path"] as? String }
        #expect(paths == paths.sorted())
    }

    @Test("hostile files are all reported, the batch goes on, exit 1")
    func probeHostile() async throws {
        let result = try await Tool.run(Self.executable, ["probe", "--json", Fixtures.samples.appendingPathComponent("hostile").path])
        #expect(result.status == 1)
        let lines = try Self.lines(result.stdout)
        var codes = [String: String]()
        for line in lines {
            let name = (line["path"] as! NSString).lastPathComponent
            codes[name] = (line["error"] as? [String: Any])?["code"] as? String ?? "none"
        }
        #expect(codes == [
            "empty.bin": "empty", "truncated.jpg": "none", "truncated.mp4": "corrupt", "huge-claim.png": "too_large",
            "html-as-image.jpg": "none", "script.svg": "none", "playlist.mp4": "none", "numbers.png": "none",
            "slow-filter.svg": "none",
        ])
    }

    @Test("--thumbnails writes one decodable thumbnail per picture")
    func probeThumbnails() async throws {
        let out = try Fixtures.temporaryDirectory("cli-thumbs")
        let files = ["photo-exif-orientation-6.jpg", "clip-h264.mp4", "three-pages.pdf"].map { Fixtures.media($0) }
        let result = try await Tool.run(Self.executable, ["probe", "--json", "--thumbnails", out.path, "--size", "64x64", "--format", "png"] + files)
        #expect(result.status == 0, "\(result.stderr)")
        for line in try Self.lines(result.stdout) {
            let thumbnail = try #require(line["thumbnail"] as? String)
            #expect(thumbnail.hasSuffix(".png"))
            let width = try await Int(Tool.text("vipsheader", ["-f", "width", thumbnail]))!
            let height = try await Int(Tool.text("vipsheader", ["-f", "height", thumbnail]))!
            #expect(max(width, height) == 64)
        }
    }

    @Test("the table output names every file")
    func table() async throws {
        let result = try await Tool.run(Self.executable, ["probe", Fixtures.media("clip-h264.mp4"), Fixtures.hostile("truncated.mp4")])
        #expect(result.status == 1)
        #expect(result.stdout.contains("TYPE"))
        #expect(result.stdout.contains("320x240"))
        #expect(result.stdout.contains("corrupt"))
        #expect(result.stderr.contains("2 files, 1 with errors"))
    }

    @Test("the table keeps its columns for long MIME types")
    func tableColumns() async throws {
        let files = ["report.docx", "budget.xlsx", "clip-h264.mp4"].map(Fixtures.media)
        let result = try await Tool.run(Self.executable, ["probe"] + files)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 4, "\(result.stdout)")
        // Every row's file column starts where the header's FILE does.
        let header = try #require(lines.first)
        let fileColumn = try #require(header.range(of: "FILE")).lowerBound.utf16Offset(in: header)
        for (line, file) in zip(lines.dropFirst(), files) {
            #expect(line.range(of: file).map { $0.lowerBound.utf16Offset(in: line) } == fileColumn, "\(line)")
        }
        #expect(lines[1].contains("application/vnd.openxmlfor…"))
    }

    @Test("thumbnail writes the file; a file without a picture fails clearly")
    func thumbnailCommand() async throws {
        let out = try Fixtures.temporaryDirectory("cli-thumb").appendingPathComponent("poster.webp").path
        let ok = try await Tool.run(Self.executable, ["thumbnail", Fixtures.media("phone-rotated-90.mp4"), "-o", out, "--size", "100"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try await Tool.text("file", ["--brief", "--mime-type", out]) == "image/webp")
        #expect(try await Tool.text("vipsheader", ["-f", "height", out]) == "100")

        let bad = try await Tool.run(Self.executable, ["thumbnail", Fixtures.media("tone.wav"), "-o", out])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("no_thumbnail"))
    }

    @Test("a path that does not exist is a usage error")
    func missingPath() async throws {
        let result = try await Tool.run(Self.executable, ["probe", "/nonexistent/dir"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("No such file"))
    }

    @Test("the 50000×50000 PNG claim is refused without the process growing past 200 MB")
    func pixelFloodMemory() async throws {
        let result = try await MeasuredProcess.run(Self.executable, ["probe", "--json", "--thumbnails", NSTemporaryDirectory(), Fixtures.hostile("huge-claim.png")])
        #expect(result.status == 1)
        #expect(result.stdout.contains("too_large"))
        #expect(result.maxResidentBytes < 200 << 20, "peak RSS \(result.maxResidentBytes >> 20) MiB")
        // Only a decode of the claimed 2.5 gigapixels would take this long (minutes); the
        // refusal takes milliseconds, but the run beside it can delay the process by seconds.
        #expect(result.seconds < 60)
    }
}
