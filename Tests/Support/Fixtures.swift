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
