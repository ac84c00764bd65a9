import Foundation

/// Paths of the committed fixtures in `samples/` and of scratch space for a test.
public enum Fixtures {
    /// The package's root folder, found from this file's location.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static let samples = packageRoot.appendingPathComponent("samples")

    public static func media(_ name: String) -> String {
        samples.appendingPathComponent("media").appendingPathComponent(name).path
    }

    public static func hostile(_ name: String) -> String {
        samples.appendingPathComponent("hostile").appendingPathComponent(name).path
    }

    /// The everyday files that once came out wrong (`scripts/make-samples.sh real-world`).
    public static func realWorld(_ name: String) -> String {
        samples.appendingPathComponent("real-world").appendingPathComponent(name).path
    }

    /// A copy of a `samples/media` picture with a location written into it by ExifTool, as a
    /// phone or a photo manager would: EXIF GPS, XMP's GPS and place fields, and two other
    /// fields (`IFD0:Artist`, `XMP-dc:Title`) that must survive a location strip.
    public static func locatedCopy(of sample: String) async throws -> String {
        let path = try temporaryDirectory("gps").appendingPathComponent(sample).path
        try FileManager.default.copyItem(atPath: media(sample), toPath: path)
        try await Tool.text("exiftool", ["-q", "-overwrite_original",
                                         "-GPSLatitude=48.8584", "-GPSLatitudeRef=N", "-GPSLongitude=2.2945", "-GPSLongitudeRef=E",
                                         "-GPSAltitude=35", "-GPSDateStamp=2026:06:01",
                                         "-XMP-exif:GPSLatitude=48.8584N", "-XMP-exif:GPSLongitude=2.2945E",
                                         "-XMP-photoshop:City=Paris", "-XMP-iptcCore:Location=Champ de Mars",
                                         "-EXIF:Artist=Ann Example", "-XMP-dc:Title=Holiday", path])
        return path
    }

    /// A copy of a `samples/media` picture without its GPS (removed by ExifTool), as the seed
    /// app's `UIImage.jpegData` sends a photo: what a test that expects its bytes back uploads,
    /// since the server strips location from what it stores.
    public static func locationFreeCopy(of sample: String) async throws -> String {
        let path = try temporaryDirectory("nogps").appendingPathComponent(sample).path
        try FileManager.default.copyItem(atPath: media(sample), toPath: path)
        try await Tool.text("exiftool", ["-q", "-overwrite_original", "-gps:all=", "-xmp:all=", path])
        return path
    }

    /// ExifTool's tags of a file, `group:name` → value (every group and duplicate, numbers raw).
    public static func exifToolTags(_ path: String) async throws -> [String: String] {
        let json = try await Tool.text("exiftool", ["-j", "-a", "-G1", "-n", path])
        guard let objects = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]], let first = objects.first else {
            throw Tool.Failure(description: "exiftool -j printed no object for \(path)")
        }
        return first.mapValues { "\($0)" }
    }

    /// Tags that say where: GPS in any group, and the XMP place fields.
    public static func locationTags(_ tags: [String: String]) -> [String: String] {
        tags.filter { key, _ in key.hasPrefix("GPS:") || key.contains(":GPS") || key.hasSuffix(":City") || key.hasSuffix(":Location") }
    }

    /// Every file in `samples/media`, sorted.
    public static var allMedia: [String] {
        let folder = samples.appendingPathComponent("media")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted()
    }

    /// A new, empty folder under the system's temporary directory.
    public static func temporaryDirectory(_ label: String = "test") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("mediagate-\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Writes `count` random bytes to `path` (incompressible, CRs anywhere, no type to sniff).
    public static func writeRandomBytes(_ count: Int, to path: String) async throws {
        try await Tool.text("sh", ["-c", "head -c \(count) /dev/urandom > '\(path)'"])
    }
}
