import Foundation
import MediagateTestSupport
import MediaPipeline
import Testing

/// Location metadata taken out of pictures in place (issue #13), judged by ExifTool: what it
/// finds after the strip, what it still finds (the rest of the metadata), and libvips' decoded
/// pixels before and after (nothing about the picture may change).
@Suite("location metadata")
struct LocationMetadataTests {
    static func pixels(_ path: String) async throws -> String {
        let raw = path + ".raw"
        try await Tool.text("vips", ["rawsave", path, raw])
        defer { try? FileManager.default.removeItem(atPath: raw) }
        return try await Tool.text("sha256sum", [raw]).split(separator: " ").first.map(String.init) ?? ""
    }

    static let pictures = ["photo-exif-orientation-6.jpg", "alpha.png", "still.webp", "iphone.heic", "photo.avif"]

    @Test("EXIF GPS and XMP location go; the picture, its size, its orientation and other metadata stay", arguments: pictures)
    func strips(sample: String) async throws {
        let path = try await Fixtures.locatedCopy(of: sample)
        let before = try await Fixtures.exifToolTags(path)
        #expect(before.keys.contains { $0.hasPrefix("GPS:") }, "ExifTool must have written GPS into \(sample): \(before.keys.sorted())")
        #expect(before["XMP-photoshop:City"] == "Paris")
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        let pixels = try await Self.pixels(path)

        let removal = try LocationMetadata.strip(fileAt: path)
        #expect(removal.exifGPSDirectories == 1)
        #expect(removal.xmpProperties == 4, "exif:GPSLatitude, exif:GPSLongitude, photoshop:City, Iptc4xmpCore:Location")

        let after = try await Fixtures.exifToolTags(path)
        let located = Fixtures.locationTags(after)
        #expect(located.isEmpty, "\(sample) still says where: \(located)")
        #expect(after["IFD0:Artist"] == "Ann Example", "\(sample): \(after.keys.sorted())")
        #expect(after["XMP-dc:Title"] == "Holiday")
        #expect(after["IFD0:Orientation"] == before["IFD0:Orientation"])
        #expect(after["ExifTool:Warning"] == before["ExifTool:Warning"], "\(sample): the strip must not damage the structure")
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == size)
        #expect(try await Self.pixels(path) == pixels, "\(sample): the picture itself changed")
        // Stripping again finds nothing.
        #expect(try LocationMetadata.strip(fileAt: path).removedAnything == false)
    }

    @Test("files with no location, and files that are not pictures, are not touched")
    func untouched() async throws {
        for sample in ["cmyk.jpg", "progressive.jpg", "three-pages.pdf", "clip-h264.mp4", "readme.txt"] {
            let path = try Fixtures.temporaryDirectory("plain").appendingPathComponent(sample).path
            try FileManager.default.copyItem(atPath: Fixtures.media(sample), toPath: path)
            #expect(try LocationMetadata.strip(fileAt: path).removedAnything == false, "\(sample)")
            #expect(FileManager.default.contentsEqual(atPath: path, andPath: Fixtures.media(sample)), "\(sample) was rewritten")
        }
    }

    @Test("damaged and hostile metadata never crash the strip or touch bytes outside the file")
    func hostileStructures() async throws {
        var generator = SeededGenerator(seed: 13)
        for sample in Self.pictures {
            let located = try Data(contentsOf: URL(fileURLWithPath: try await Fixtures.locatedCopy(of: sample)))
            let path = try Fixtures.temporaryDirectory("fuzz").appendingPathComponent(sample).path
            for round in 0..<200 {
                var bytes = [UInt8](located)
                // Metadata sits near the start (HEIF's may be at the end): damage both ends.
                for _ in 0..<Int.random(in: 1...8, using: &generator) {
                    let window = min(bytes.count, 4096)
                    let index = Bool.random(using: &generator) ? Int.random(in: 0..<window, using: &generator)
                                                                : bytes.count - 1 - Int.random(in: 0..<window, using: &generator)
                    bytes[index] = [0x00, 0xFF, 0x01, 0x7F, UInt8.random(in: 0...255, using: &generator)].randomElement(using: &generator)!
                }
                if round % 10 == 0 { bytes.removeLast(Int.random(in: 0..<bytes.count, using: &generator)) }
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                _ = try LocationMetadata.strip(fileAt: path)
                #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == bytes.count)
            }
        }
    }
}

/// xorshift64*: a fixed seed, so a failing round can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}
