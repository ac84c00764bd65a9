import Foundation
import MediaPipeline
import MediagateWire
import NIOCore
import NIOFoundationCompat
import NIOPosix

/// On-demand thumbnails of stored files, cached on disk.
///
/// Sizes snap up to a fixed ladder, so nobody can fill the disk by asking for every size; one
/// computation per distinct thumbnail however many ask at once (single flight); the work runs
/// on a media worker pool with a bounded queue, whose `overloaded` becomes a 503.
///
/// Recently served or made thumbnails are also kept in memory (`memoryBytes` in all): a chat
/// room's thumbnails are asked for by every member, and serving them from a buffer instead of
/// the disk took the cached rate from ~2,000 to ~10,000 requests/s (Docs/BENCHMARKS.md).
package struct Thumbnails: Sendable {
    package static let ladder = [32, 96, 320, 640, 1280]

    package let directory: String
    /// Pictures upload completion decoded large JPEGs to (`decoded/<sha256>.jpg`, ~0.2 MP for a
    /// 12 MP photo): small thumbnails are made from these instead of the original.
    package let decodedDirectory: String
    package let processor: MediaProcessor
    package let flights: ThumbnailFlights
    package let memory: MemoryCache<ByteBuffer>
    /// Files whose picture could not be drawn, by SHA-256, and why: a render that failed or ran
    /// out of time fails the same way at every size, so a repeat answers at once instead of
    /// spending the time limit again (an SVG built to be slow, asked for over and over).
    package let failures = MemoryCache<MediaError>(capacity: 100_000)
    package var threadPool: NIOThreadPool = .singleton

    package init(dataDirectory: String, processor: MediaProcessor, memoryBytes: Int = 32 << 20) throws {
        directory = (dataDirectory as NSString).appendingPathComponent("thumbs")
        decodedDirectory = (dataDirectory as NSString).appendingPathComponent("decoded")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: decodedDirectory, withIntermediateDirectories: true)
        self.processor = processor
        flights = ThumbnailFlights()
        memory = MemoryCache(capacity: memoryBytes)
    }

    /// The ladder step at or above `value` (the largest step for anything bigger).
    package static func snap(_ value: Int?) -> Int? {
        value.map { requested in ladder.first { $0 >= requested } ?? ladder.last! }
    }

    /// A request with its box snapped to the ladder: both sides given, one side (a square), or
    /// neither (320).
    package static func request(width: Int?, height: Int?, fit: ThumbnailRequest.Fit, format: ThumbnailRequest.Format) -> ThumbnailRequest {
        let w = snap(width) ?? snap(height) ?? 320
        let h = snap(height) ?? w
        return ThumbnailRequest(width: w, height: h, fit: fit, format: format)
    }

    /// The file name in `thumbs/`; also the thumbnail's ETag.
    package func cacheName(sha256: String, _ request: ThumbnailRequest) -> String {
        "\(sha256)-\(request.width)x\(request.height)-\(request.fit.rawValue).\(request.format.fileExtension)"
    }

    package func cachePath(sha256: String, _ request: ThumbnailRequest) -> String {
        "\(directory)/\(cacheName(sha256: sha256, request))"
    }

    package func decodedPath(sha256: String) -> String { "\(decodedDirectory)/\(sha256).jpg" }

    /// What to make `request` from: the picture decoded at upload when it is at least as
    /// detailed as decoding the original for this request would be, else the original, which
    /// `blob` provides (fetching it, on a node whose blob store is remote).
    package func source(blob: () async throws -> String, sha256: String, picture: Attachment, request: ThumbnailRequest,
                        decodedFor eager: ThumbnailRequest) async throws -> String {
        guard picture.mimeType == "image/jpeg", let width = picture.width, let height = picture.height else { return try await blob() }
        let kept = MediaProcessor.jpegDecodeScale(displayedWidth: width, displayedHeight: height, for: eager)
        let needed = MediaProcessor.jpegDecodeScale(displayedWidth: width, displayedHeight: height, for: request)
        let decoded = decodedPath(sha256: sha256)
        return kept > 1 && needed >= kept && FileManager.default.fileExists(atPath: decoded) ? decoded : try await blob()
    }

    /// The thumbnail's bytes and its cache name (the ETag): from memory, from the disk cache,
    /// or made now (from the decoded picture or the original `blob`, see ``source``). The
    /// original is asked for only when the thumbnail must be made from it.
    package func thumbnailBytes(blob: () async throws -> String, sha256: String, picture: Attachment, request: ThumbnailRequest,
                                decodedFor eager: ThumbnailRequest) async throws -> (bytes: ByteBuffer, name: String) {
        if let hit = inMemory(sha256: sha256, request) { return hit }
        let name = cacheName(sha256: sha256, request)
        let path = "\(directory)/\(name)"
        if !FileManager.default.fileExists(atPath: path) {
            if let failure = failures[sha256] { throw failure }
            let source = try await source(blob: blob, sha256: sha256, picture: picture, request: request, decodedFor: eager)
            _ = try await thumbnail(of: source, sha256: sha256, request: request)
            // Made just now, save() put it in memory; only a disk-cache hit is read back.
            if let bytes = memory[path] { return (bytes, name) }
        }
        let bytes = try await threadPool.runIfActive { ByteBuffer(data: try Data(contentsOf: URL(fileURLWithPath: path))) }
        memory.insert(bytes, forKey: path, cost: bytes.readableBytes)
        return (bytes, name)
    }

    /// The thumbnail's bytes and cache name if it is held in memory; never waits.
    package func inMemory(sha256: String, _ request: ThumbnailRequest) -> (bytes: ByteBuffer, name: String)? {
        let name = cacheName(sha256: sha256, request)
        return memory["\(directory)/\(name)"].map { ($0, name) }
    }

    /// The cached thumbnail's path, computing it first if needed.
    package func thumbnail(of blob: String, sha256: String, request: ThumbnailRequest) async throws -> String {
        let path = cachePath(sha256: sha256, request)
        if FileManager.default.fileExists(atPath: path) { return path }
        if let failure = failures[sha256] { throw failure }
        return try await flights.run(key: path) {
            if FileManager.default.fileExists(atPath: path) { return path }
            let thumbnail: Thumbnail
            do {
                thumbnail = try await processor.thumbnail(fileAt: blob, request: request)
            } catch let error as MediaError where Self.failsAgain(error) {
                failures.insert(error, forKey: sha256)
                throw error
            }
            try await save(thumbnail, to: path)
            return path
        }
    }

    /// Failures of the bytes themselves, which a retry would repeat; not a full queue or a
    /// file that could not be read.
    package static func failsAgain(_ error: MediaError) -> Bool {
        [.corrupt, .timedOut, .tooLarge, .unsupported, .noThumbnail].contains(error.code)
    }

    /// Writes atomically: a reader never sees half a thumbnail.
    package func save(_ thumbnail: Thumbnail, to path: String) async throws {
        let data = thumbnail.data
        try await threadPool.runIfActive {
            let temporary = path + ".\(UUID().uuidString).tmp"
            try data.write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, path) == 0 else { throw SystemCallError("rename", errno) }
        }
        memory.insert(ByteBuffer(data: data), forKey: path, cost: data.count)
    }
}

/// Concurrent requests for the same thumbnail share one computation.
package actor ThumbnailFlights {
    private var running: [String: Task<String, any Error>] = [:]

    package func run(key: String, _ work: @escaping @Sendable () async throws -> String) async throws -> String {
        if let task = running[key] { return try await task.value }
        let task = Task { try await work() }
        running[key] = task
        defer { running[key] = nil }
        return try await task.value
    }
}
