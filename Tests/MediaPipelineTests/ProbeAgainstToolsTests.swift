import Foundation
import MediagateWire
import MediagateTestSupport
import MediaPipeline
import Testing

/// Every fixture in samples/media, probed and checked against independent tools: `file`,
/// `vipsheader`, `ffprobe`, `pdfinfo`, `sha256sum`.
@Suite("probe agrees with independent tools")
struct ProbeAgainstToolsTests {
    static let pipeline = MediaProcessor(pool: MediaWorkerPool(threadCount: 2))

    /// What a client should show each fixture as.
    static let expectedKinds: [String: MediagateWire.Attachment.Kind] = [
        "alpha.png": .image, "animated.gif": .image, "animated.webp": .image, "cmyk.jpg": .image,
        "drawing.svg": .image, "grey-16bit.png": .image, "iphone.heic": .image, "legacy.bmp": .image,
        "photo-exif-orientation-6.jpg": .image, "photo.avif": .image, "progressive.jpg": .image,
        "scan.tiff": .image, "still.webp": .image,
        "clip-h264.mp4": .video, "clip-hevc.mov": .video, "clip-vp9.webm": .video, "clip.avi": .video,
        "clip.mkv": .video, "opens-black.mp4": .video, "phone-rotated-90.mp4": .video,
        "audio-only.mp4": .audio, "song-with-cover.mp3": .audio, "tone.flac": .audio, "tone.wav": .audio,
        "tune.ogg": .audio, "voice-note.m4a": .audio, "voice.opus": .audio,
        "three-pages.pdf": .document, "report.docx": .document, "budget.xlsx": .document,
        "notes.odt": .document, "readme.txt": .document,
    ]

    /// Where we answer better than libmagic 5.44, and why (see Docs/ARCHITECTURE.md).
    static let betterMimeTypes: [String: String] = [
        // libmagic reads only the first ZIP entry; the central directory says Word / Excel.
        "report.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "budget.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        // libmagic names the container; the only stream is audio.
        "audio-only.mp4": "audio/mp4",
        "voice-note.m4a": "audio/mp4",
    ]

    @Test("every fixture has an expected kind")
    func fixturesAreListed() {
        #expect(Set(Fixtures.allMedia) == Set(Self.expectedKinds.keys))
    }

    @Test("type, MIME, size and SHA-256", arguments: Fixtures.allMedia)
    func basics(name: String) async throws {
        let path = Fixtures.media(name)
        let report = try await Self.pipeline.probe(fileAt: path)
        #expect(report.error == nil, "\(name): \(String(describing: report.error))")
        let attachment = report.attachment
        #expect(attachment.type == Self.expectedKinds[name])
        #expect(attachment.filename == name)
        let fileSays = try await Tool.text("file", ["--brief", "--mime-type", path])
        #expect(attachment.mimeType == (Self.betterMimeTypes[name] ?? fileSays))
        let bytes = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        #expect(attachment.size == bytes)
        let sha = try await Tool.text("sha256sum", [path]).split(separator: " ").first.map(String.init)
        #expect(attachment.sha256 == sha)
        #expect(attachment.claimedMimeType == nil)
    }

    static var stillPictures: [String] {
        Fixtures.allMedia.filter { expectedKinds[$0] == .image }
    }

    @Test("image size as displayed, as vipsheader reads it with orientation applied", arguments: stillPictures)
    func imageDimensions(name: String) async throws {
        let path = Fixtures.media(name)
        let report = try await Self.pipeline.probe(fileAt: path)
        let width = try await Int(Tool.text("vipsheader", ["-f", "width", path]))!
        // Multi-frame images report one frame's height as page-height.
        var heightText = try? await Tool.text("vipsheader", ["-f", "page-height", path])
        if heightText == nil { heightText = try await Tool.text("vipsheader", ["-f", "height", path]) }
        let height = Int(heightText ?? "")!
        let orientation = Int((try? await Tool.text("vipsheader", ["-f", "orientation", path])) ?? "1") ?? 1
        let turned = (5...8).contains(orientation)
        #expect(report.attachment.width == (turned ? height : width))
        #expect(report.attachment.height == (turned ? width : height))
        #expect(report.attachment.blurhash.map { (20...40).contains($0.count) } == true)
        #expect(report.attachment.duration == nil)
    }

    @Test("the EXIF-rotated photo is portrait as displayed")
    func exifOrientation() async throws {
        let report = try await Self.pipeline.probe(fileAt: Fixtures.media("photo-exif-orientation-6.jpg"))
        #expect(report.attachment.width == 300)
        #expect(report.attachment.height == 400)
    }

    @Test("animated GIF and WebP report their frames", arguments: ["animated.gif", "animated.webp", "still.webp"])
    func animation(name: String) async throws {
        let path = Fixtures.media(name)
        let report = try await Self.pipeline.probe(fileAt: path)
        // vipsheader leaves n-pages out for single-frame files.
        let pages = Int((try? await Tool.text("vipsheader", ["-f", "n-pages", path])) ?? "1")!
        #expect(report.attachment.frameCount == pages)
        #expect(report.attachment.animated == (pages > 1))
        #expect(name == "still.webp" || pages > 1)
    }

    @Test("PDF page count and page size, as pdfinfo says")
    func pdf() async throws {
        let path = Fixtures.media("three-pages.pdf")
        let report = try await Self.pipeline.probe(fileAt: path)
        let info = try await Tool.text("pdfinfo", [path])
        let pages = info.split(separator: "\n").first { $0.hasPrefix("Pages:") }?.split(separator: " ").last.flatMap { Int($0) }
        #expect(report.attachment.pageCount == pages)
        #expect(report.attachment.pageCount == 3)
        #expect(report.attachment.width == 612 && report.attachment.height == 792)
        #expect(report.attachment.blurhash != nil)
    }

    static var timedMedia: [String] {
        Fixtures.allMedia.filter { expectedKinds[$0] == .video || expectedKinds[$0] == .audio }
    }

    @Test("duration, size as displayed and codecs, as ffprobe says", arguments: timedMedia)
    func audioVideo(name: String) async throws {
        let path = Fixtures.media(name)
        let report = try await Self.pipeline.probe(fileAt: path)
        let probe = try await FFprobe(path: path)
        let attachment = report.attachment
        let duration = try #require(attachment.duration)
        #expect(abs(duration - probe.duration) <= 0.05)
        if let video = probe.video {
            let turned = abs(video.rotation) % 180 == 90
            #expect(attachment.width == (turned ? video.height : video.width))
            #expect(attachment.height == (turned ? video.width : video.height))
            #expect(attachment.codec == video.codec)
            #expect(attachment.hasAudio == (probe.audioCodec != nil))
            #expect(attachment.audioCodec == probe.audioCodec)
            #expect(attachment.blurhash != nil)
        } else {
            #expect(attachment.width == nil && attachment.height == nil)
            #expect(attachment.codec == probe.audioCodec)
        }
    }

    @Test("a phone video's display rotation swaps width and height")
    func rotatedVideo() async throws {
        let report = try await Self.pipeline.probe(fileAt: Fixtures.media("phone-rotated-90.mp4"))
        #expect(report.attachment.width == 240)
        #expect(report.attachment.height == 320)
    }

    @Test("attachment JSON keeps the seed article's keys and writes unknowns as null")
    func json() async throws {
        let report = try await Self.pipeline.probe(fileAt: Fixtures.media("clip-h264.mp4"))
        let data = try JSONEncoder().encode(report.attachment)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        for key in ["type", "filename", "url", "size", "mimeType", "thumbnailUrl", "duration", "width", "height",
                    "sha256", "blurhash", "pageCount", "animated", "codec"] {
            #expect(object.keys.contains(key), "missing \(key)")
        }
        #expect(object["url"] is NSNull)
        #expect(object["type"] as? String == "video")
        let decoded = try JSONDecoder().decode(MediagateWire.Attachment.self, from: data)
        #expect(decoded == report.attachment)
    }
}

/// The facts ffprobe reports for a file.
struct FFprobe {
    struct Video {
        var width: Int
        var height: Int
        var rotation: Int
        var codec: String
    }

    var duration: Double
    var video: Video?
    var audioCodec: String?

    init(path: String) async throws {
        let text = try await Tool.text("ffprobe", ["-v", "error", "-print_format", "json", "-show_format", "-show_streams", path])
        let root = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let format = try #require(root["format"] as? [String: Any])
        duration = Double(format["duration"] as? String ?? "") ?? -1
        let streams = root["streams"] as? [[String: Any]] ?? []
        for stream in streams {
            let disposition = stream["disposition"] as? [String: Any]
            let isCover = (disposition?["attached_pic"] as? Int) == 1
            switch stream["codec_type"] as? String {
            case "video" where !isCover && video == nil:
                let sideData = stream["side_data_list"] as? [[String: Any]] ?? []
                let rotation = sideData.compactMap { $0["rotation"] as? Int }.first ?? 0
                video = Video(width: stream["width"] as? Int ?? 0, height: stream["height"] as? Int ?? 0,
                              rotation: rotation, codec: stream["codec_name"] as? String ?? "")
            case "audio" where audioCodec == nil:
                audioCodec = stream["codec_name"] as? String
            default:
                break
            }
        }
    }
}
