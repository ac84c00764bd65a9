import Foundation
import MediaPipeline
import NIOPosix

/// On-demand thumbnails of stored files, cached on disk.
///
/// Sizes snap up to a fixed ladder, so nobody can fill the disk by asking for every size; one
/// computation per distinct thumbnail however many ask at once (single flight); the work runs
/// on a media worker pool with a bounded queue, whose `overloaded` becomes a 503.
struct Thumbnails: Sendable {
    static let ladder = [32, 96, 320, 640, 1280]

    let directory: String
    let processor: MediaProcessor
    let flights: ThumbnailFlights
    var threadPool: NIOThreadPool = .singleton

    init(dataDirectory: String, processor: MediaProcessor) throws {
        directory = (dataDirectory as NSString).appendingPathComponent("thumbs")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.processor = processor
        flights = ThumbnailFlights()
    }

    /// The ladder step at or above `value` (the largest step for anything bigger).
    static func snap(_ value: Int?) -> Int? {
        value.map { requested in ladder.first { $0 >= requested } ?? ladder.last! }
    }

    /// A request with its box snapped to the ladder: both sides given, one side (a square), or
    /// neither (320).
    static func request(width: Int?, height: Int?, fit: ThumbnailRequest.Fit, format: ThumbnailRequest.Format) -> ThumbnailRequest {
        let w = snap(width) ?? snap(height) ?? 320
        let h = snap(height) ?? w
        return ThumbnailRequest(width: w, height: h, fit: fit, format: format)
    }

    func cachePath(sha256: String, _ request: ThumbnailRequest) -> String {
        (directory as NSString).appendingPathComponent(
            "\(sha256)-\(request.width)x\(request.height)-\(request.fit.rawValue).\(request.format.fileExtension)")
    }

    /// The cached thumbnail's path, computing it first if needed.
    func thumbnail(of blob: String, sha256: String, request: ThumbnailRequest) async throws -> String {
        let path = cachePath(sha256: sha256, request)
        if FileManager.default.fileExists(atPath: path) { return path }
        return try await flights.run(key: path) {
            if FileManager.default.fileExists(atPath: path) { return path }
            let thumbnail = try await processor.thumbnail(fileAt: blob, request: request)
            try await save(thumbnail, to: path)
            return path
        }
    }

    /// Writes atomically: a reader never sees half a thumbnail.
    func save(_ thumbnail: Thumbnail, to path: String) async throws {
        let data = thumbnail.data
        try await threadPool.runIfActive {
            let temporary = path + ".\(UUID().uuidString).tmp"
            try data.write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, path) == 0 else { throw UploadFileError.system("rename", errno) }
        }
    }
}

/// Concurrent requests for the same thumbnail share one computation.
actor ThumbnailFlights {
    private var running: [String: Task<String, any Error>] = [:]

    func run(key: String, _ work: @escaping @Sendable () async throws -> String) async throws -> String {
        if let task = running[key] { return try await task.value }
        let task = Task { try await work() }
        running[key] = task
        defer { running[key] = nil }
        return try await task.value
    }
}
