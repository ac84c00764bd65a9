import Foundation
import MediagateTestSupport
import MediaPipeline
import Testing

/// Everyday files that came out wrong (issue #12), each checked against what FFmpeg's and
/// libvips' own tools say about it rather than against our own earlier answers.
@Suite("real-world files")
struct RealWorldFileTests {
    static let pipeline = MediaProcessor(pool: MediaWorkerPool(threadCount: 2))

    static func probe(_ name: String) async throws -> MediaReport {
        try await pipeline.probe(fileAt: Fixtures.realWorld(name), thumbnail: ThumbnailRequest(width: 320, height: 320, format: .png))
    }

    /// Mean of every band of an encoded image, per `vips avg`.
    static func average(of bytes: Data) async throws -> Double {
        let path = try Fixtures.temporaryDirectory("avg").appendingPathComponent("picture.png").path
        try bytes.write(to: URL(fileURLWithPath: path))
        return try #require(Double(try await Tool.text("vips", ["avg", path])))
    }

    static func ffprobe(_ path: String, _ entries: String) async throws -> String {
        try await Tool.text("ffprobe", ["-v", "error", "-show_entries", entries, "-of", "default=nw=1:nk=1", path])
    }

    @Test("a video that fades in from black gets a poster from after the fade has begun, not a black one")
    func fadeInPoster() async throws {
        let path = Fixtures.realWorld("fade-in.mp4")
        let report = try await Self.probe("fade-in.mp4")
        #expect(report.error == nil)
        let poster = try #require(report.thumbnail)
        // FFmpeg's own frame at 10 % of the way in, decoded exactly (it decodes forward from the
        // keyframe at 0 s): the earliest moment a poster is taken from when the first is black.
        let frame = try Fixtures.temporaryDirectory("fade").appendingPathComponent("frame.png").path
        try await Tool.text("ffmpeg", ["-nostdin", "-v", "error", "-y", "-i", path, "-ss", "0.4", "-frames:v", "1", frame])
        let reference = try #require(Double(try await Tool.text("vips", ["avg", frame])))
        let first = (frame as NSString).deletingLastPathComponent + "/first.png"
        try await Tool.text("ffmpeg", ["-nostdin", "-v", "error", "-y", "-i", path, "-frames:v", "1", first])
        #expect(try await Tool.text("vips", ["avg", first]) == "0.000000", "the fixture must open on black")
        let brightness = try await Self.average(of: poster.data)
        #expect(brightness >= reference * 0.9, "poster mean \(brightness), FFmpeg's frame at 0.4 s \(reference)")
        #expect(report.attachment.blurhash?.hasPrefix("L0000") == false)
    }

    @Test("a MediaRecorder WebM (no Duration, no Cues) has the duration its last cluster ends at")
    func recorderWebMDuration() async throws {
        let path = Fixtures.realWorld("recorder.webm")
        #expect(try await Self.ffprobe(path, "format=duration") == "N/A", "the fixture must carry no duration")
        // Where the last packet of any stream ends, per ffprobe.
        let packets = try await Tool.text("ffprobe", ["-v", "error", "-show_entries", "packet=pts_time,duration_time",
                                                      "-of", "csv=p=0", path])
        let end = packets.split(separator: "\n").compactMap { line -> Double? in
            let fields = line.split(separator: ",").compactMap { Double($0) }
            return fields.count == 2 ? fields[0] + fields[1] : nil
        }.max()
        let report = try await Self.probe("recorder.webm")
        let duration = try #require(report.attachment.duration)
        #expect(abs(duration - (try #require(end))) < 0.05, "\(duration) against \(String(describing: end))")
        #expect(report.attachment.type == .video && report.thumbnail != nil)
    }

    @Test("phone voice recordings (3GP, 3G2), AIFF and WMA are audio with FFmpeg's duration and codec",
          arguments: [("voice-memo.3gp", "audio/3gpp"), ("voice-memo.3g2", "audio/3gpp2"),
                      ("tone.aiff", "audio/x-aiff"), ("tone.wma", "audio/x-ms-wma")])
    func audioContainers(name: String, mimeType: String) async throws {
        let path = Fixtures.realWorld(name)
        let report = try await Self.pipeline.probe(fileAt: path)
        #expect(report.error == nil, "\(String(describing: report.error))")
        #expect(report.attachment.type == .audio)
        #expect(report.attachment.mimeType == mimeType)
        let duration = try #require(Double(try await Self.ffprobe(path, "format=duration")))
        #expect(abs((report.attachment.duration ?? 0) - duration) < 0.01)
        #expect(report.attachment.codec == (try await Self.ffprobe(path, "stream=codec_name")))
    }

    @Test("a JPEG cut short is drawn as far as it goes, with a warning, as vipsthumbnail draws it")
    func cutShortJPEG() async throws {
        let path = Fixtures.realWorld("cut-short.jpg")
        let out = try Fixtures.temporaryDirectory("cut").appendingPathComponent("peer.png").path
        let peer = try await Tool.run("vipsthumbnail", [path, "-s", "320", "-o", out])
        #expect(peer.status == 0 && peer.stderr.contains("Premature end"), "\(peer.stderr)")
        let report = try await Self.probe("cut-short.jpg")
        #expect(report.error == nil)
        #expect(report.attachment.type == .image)
        #expect(report.attachment.warning?.contains("cut short") == true)
        let thumbnail = try #require(report.thumbnail)
        #expect(thumbnail.width == 320 && thumbnail.height == 240)
        #expect(report.attachment.blurhash != nil)
        // The same picture as the peer's: the decoded top matches, the missing bottom is grey in both.
        let ours = try await Self.average(of: thumbnail.data)
        let theirs = try await Self.average(of: Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(abs(ours - theirs) < 3, "ours \(ours), vipsthumbnail's \(theirs)")
    }

    @Test("a GIF is as large as its logical screen, as ffprobe reads it, and so is its thumbnail")
    func gifLogicalScreen() async throws {
        let path = Fixtures.realWorld("sticker.gif")
        let size = try await Self.ffprobe(path, "stream=width,height").split(separator: "\n").compactMap { Int($0) }
        #expect(size == [640, 480])
        let report = try await Self.probe("sticker.gif")
        #expect(report.attachment.width == 640 && report.attachment.height == 480)
        let thumbnail = try #require(report.thumbnail)
        #expect(thumbnail.width == 320 && thumbnail.height == 240)
        #expect(report.attachment.animated == true && report.attachment.frameCount == 2)
    }

    @Test("a video none of whose frames decodes is delivered as a plain file")
    func undecodableVideo() async throws {
        let report = try await Self.probe("no-pictures.mp4")
        #expect(report.error?.code == .corrupt)
        #expect(report.attachment.type == .file)
        #expect(report.attachment.mimeType == "video/mp4")
        #expect(report.attachment.blurhash == nil && report.thumbnail == nil)
        #expect(report.attachment.warning?.contains("plain file") == true)
    }

    @Test("headers-only probes deliver over-limit media as a plain file too")
    func headersOnlyOverLimit() async throws {
        let report = try await Self.pipeline.probe(fileAt: Fixtures.hostile("huge-claim.png"), depth: .headers)
        #expect(report.error?.code == .tooLarge)
        #expect(report.attachment.type == .file)
    }
}
