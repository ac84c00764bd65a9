import Foundation
import MediagateTestSupport
@testable import MediaPipeline
import Testing

/// Thumbnails decode, fit their box, are upright, carry no metadata and are never upscaled.
@Suite("thumbnails")
struct ThumbnailTests {
    static let processor = MediaProcessor(pool: MediaWorkerPool(threadCount: 2))

    static let pictured = [
        "alpha.png", "animated.gif", "animated.webp", "cmyk.jpg", "drawing.svg", "grey-16bit.png",
        "iphone.heic", "legacy.bmp", "photo-exif-orientation-6.jpg", "photo.avif", "progressive.jpg",
        "scan.tiff", "still.webp", "three-pages.pdf", "clip-h264.mp4", "clip-hevc.mov", "clip-vp9.webm",
        "clip.avi", "clip.mkv", "opens-black.mp4", "phone-rotated-90.mp4", "song-with-cover.mp3",
    ]

    /// Writes `thumbnail` to a temporary file and returns its path.
    static func save(_ thumbnail: Thumbnail) throws -> String {
        let url = try Fixtures.temporaryDirectory("thumb").appendingPathComponent("t.\(thumbnail.format.fileExtension)")
        try thumbnail.data.write(to: url)
        return url.path
    }

    /// The mean of each band at (x, y), read by `vips getpoint`.
    static func pixel(_ path: String, _ x: Int, _ y: Int) async throws -> [Double] {
        try await Tool.text("vips", ["getpoint", path, "\(x)", "\(y)"]).split(separator: " ").compactMap { Double($0) }
    }

    @Test("fits the box, decodes with vipsheader, has no EXIF", arguments: pictured)
    func fitsAndDecodes(name: String) async throws {
        let request = ThumbnailRequest(width: 96, height: 64, fit: .contain, format: .jpeg)
        let thumbnail = try await Self.processor.thumbnail(fileAt: Fixtures.media(name), request: request)
        let path = try Self.save(thumbnail)
        let width = try await Int(Tool.text("vipsheader", ["-f", "width", path]))!
        let height = try await Int(Tool.text("vipsheader", ["-f", "height", path]))!
        #expect(width == thumbnail.width && height == thumbnail.height)
        #expect(width <= 96 && height <= 64)
        #expect(width == 96 || height == 64, "a contained thumbnail touches two sides of its box")
        #expect(try await Tool.text("file", ["--brief", "--mime-type", path]) == "image/jpeg")
        let exif = try await Tool.text("exiftool", ["-s", "-s", "-s", "-EXIF:all", "-GPS:all", "-XMP:all", path])
        #expect(exif.isEmpty, "metadata left in the thumbnail of \(name): \(exif)")
    }

    @Test("the EXIF orientation 6 photo comes out upright: red on top, blue below")
    func upright() async throws {
        let thumbnail = try await Self.processor.thumbnail(
            fileAt: Fixtures.media("photo-exif-orientation-6.jpg"), request: ThumbnailRequest(width: 150, height: 200, format: .png))
        #expect(thumbnail.width == 150 && thumbnail.height == 200)
        let path = try Self.save(thumbnail)
        let top = try await Self.pixel(path, 100, 20)
        let bottom = try await Self.pixel(path, 100, 180)
        #expect(top[0] > 150 && top[2] < 100, "top should be red, is \(top)")
        #expect(bottom[2] > 150 && bottom[0] < 100, "bottom should be blue, is \(bottom)")
        // The grey gradient stripe is on the left edge when upright.
        let left = try await Self.pixel(path, 3, 190)
        #expect(abs(left[0] - left[1]) < 20 && abs(left[1] - left[2]) < 20)
    }

    @Test("a 12 MP photo decodes at 1/8 scale and still comes out upright and sharp enough")
    func largeOrientedPhoto() async throws {
        // The orientation-6 fixture blown up ten times: 4000x3000 stored, EXIF orientation kept.
        let big = try Fixtures.temporaryDirectory("big").appendingPathComponent("big.jpg").path
        _ = try await Tool.run("vips", ["resize", Fixtures.media("photo-exif-orientation-6.jpg"), big + "[Q=90]", "10"])
        #expect(try await Tool.text("vipsheader", ["-f", "width", big]) == "4000")
        let thumbnail = try await Self.processor.thumbnail(fileAt: big, request: ThumbnailRequest(width: 320, height: 320, format: .png))
        #expect(thumbnail.width == 240 && thumbnail.height == 320)
        let path = try Self.save(thumbnail)
        let top = try await Self.pixel(path, 160, 30), bottom = try await Self.pixel(path, 160, 290)
        #expect(top[0] > 150 && top[2] < 100, "top should be red, is \(top)")
        #expect(bottom[2] > 150 && bottom[0] < 100, "bottom should be blue, is \(bottom)")
        // The same picture as libvips' own (more careful, twice as costly) thumbnail, within a few levels.
        let reference = try Fixtures.temporaryDirectory("big").appendingPathComponent("reference.png").path
        _ = try await Tool.run("vipsthumbnail", [big, "-s", "320x320", "-o", reference])
        let difference = try await Tool.text("vips", ["avg", try Self.absoluteDifference(path, reference)])
        #expect(Double(difference)! < 4, "mean absolute difference from vipsthumbnail: \(difference)")
    }

    /// Writes |a - b| to a temporary file and returns its path.
    static func absoluteDifference(_ a: String, _ b: String) async throws -> String {
        let directory = try Fixtures.temporaryDirectory("diff")
        let difference = directory.appendingPathComponent("d.v").path, absolute = directory.appendingPathComponent("abs.v").path
        _ = try await Tool.run("vips", ["subtract", a, b, difference])
        _ = try await Tool.run("vips", ["abs", difference, absolute])
        return absolute
    }

    @Test("the JPEG decode scale is the largest that still covers the box")
    func jpegScale() {
        func shrink(_ width: Int, _ height: Int, orientation: Int = 1, box: Int, fit: ThumbnailRequest.Fit = .contain) -> Int {
            VipsImaging.jpegShrink(header: ImageHeader(width: width, height: height, pages: 1, orientation: orientation, loader: "jpegload"),
                                   request: ThumbnailRequest(width: box, height: box, fit: fit))
        }
        #expect(shrink(4000, 3000, box: 320) == 8)   // 12.5x: 500x375 still covers 320
        #expect(shrink(4000, 3000, box: 640) == 4)   // 6.25x
        #expect(shrink(4000, 3000, box: 1280) == 2)  // 3.1x
        #expect(shrink(4000, 3000, box: 2000) == 2)  // 2000x1500 exactly covers the box
        #expect(shrink(4000, 3000, box: 2100) == 1)  // 1.9x is no DCT scale
        #expect(shrink(300, 400, box: 320) == 1)
        #expect(shrink(4000, 1000, box: 320, fit: .cover) == 2) // cover: the short side (1000) must fill 320
    }

    @Test("a phone video's poster is portrait")
    func rotatedPoster() async throws {
        let thumbnail = try await Self.processor.thumbnail(
            fileAt: Fixtures.media("phone-rotated-90.mp4"), request: ThumbnailRequest(width: 320, height: 320))
        #expect(thumbnail.width == 240 && thumbnail.height == 320)
    }

    @Test("the poster skips a black opening")
    func posterIsNotBlack() async throws {
        let thumbnail = try await Self.processor.thumbnail(
            fileAt: Fixtures.media("opens-black.mp4"), request: ThumbnailRequest(width: 160, height: 120))
        let mean = try await Double(Tool.text("vips", ["avg", Self.save(thumbnail)]))!
        #expect(mean > 40, "poster mean brightness \(mean)")
    }

    @Test("never upscaled")
    func noUpscale() async throws {
        let thumbnail = try await Self.processor.thumbnail(
            fileAt: Fixtures.media("progressive.jpg"), request: ThumbnailRequest(width: 2000, height: 2000))
        #expect(thumbnail.width == 300 && thumbnail.height == 400)
    }

    @Test("cover fills the box exactly")
    func cover() async throws {
        let thumbnail = try await Self.processor.thumbnail(
            fileAt: Fixtures.media("clip-h264.mp4"), request: ThumbnailRequest(width: 100, height: 100, fit: .cover))
        #expect(thumbnail.width == 100 && thumbnail.height == 100)
    }

    @Test("WebP and PNG thumbnails are what they say, and keep alpha", arguments: [ThumbnailRequest.Format.webp, .png])
    func formats(format: ThumbnailRequest.Format) async throws {
        let thumbnail = try await Self.processor.thumbnail(
            fileAt: Fixtures.media("alpha.png"), request: ThumbnailRequest(width: 64, height: 64, format: format))
        let path = try Self.save(thumbnail)
        #expect(try await Tool.text("file", ["--brief", "--mime-type", path]) == format.mimeType)
        #expect(try await Tool.text("vipsheader", ["-f", "bands", path]) == "4")
    }

    @Test("an animated GIF's thumbnail is its first frame only")
    func firstFrame() async throws {
        let thumbnail = try await Self.processor.thumbnail(
            fileAt: Fixtures.media("animated.gif"), request: ThumbnailRequest(width: 160, height: 120, format: .webp))
        let path = try Self.save(thumbnail)
        #expect(thumbnail.height == 120)
        #expect((try? await Tool.text("vipsheader", ["-f", "n-pages", path])) ?? "1" == "1")
    }

    @Test("files without a picture answer no_thumbnail", arguments: ["tone.wav", "voice.opus", "readme.txt", "report.docx"])
    func noPicture(name: String) async throws {
        let error = await #expect(throws: MediaError.self) {
            _ = try await Self.processor.thumbnail(fileAt: Fixtures.media(name), request: ThumbnailRequest())
        }
        #expect(error?.code == .noThumbnail)
    }

    @Test("probe with a thumbnail request makes it in the same pass")
    func probeWithThumbnail() async throws {
        let report = try await Self.processor.probe(
            fileAt: Fixtures.media("iphone.heic"), thumbnail: ThumbnailRequest(width: 64, height: 64, format: .webp))
        let thumbnail = try #require(report.thumbnail)
        #expect(thumbnail.height == 64 && thumbnail.width == 48)
        #expect(report.attachment.blurhash != nil)
    }
}
