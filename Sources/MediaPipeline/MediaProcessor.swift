import Foundation
import MediagateWire

/// File in, ``Attachment`` out: sniffs the type from the bytes (libmagic), reads dimensions,
/// duration and pages (libvips, FFmpeg), makes a thumbnail and a BlurHash, and hashes the bytes.
///
/// All blocking C work runs on the ``MediaWorkerPool`` given at creation, never on the caller's
/// thread or Swift's cooperative pool.
///
/// ```swift
/// let pipeline = MediaProcessor()
/// let report = try await processor.probe(fileAt: "IMG_0001.HEIC", thumbnail: ThumbnailRequest())
/// print(report.attachment.width, report.attachment.blurhash)
/// ```
public struct MediaProcessor: Sendable {
    public var limits: MediaLimits
    /// Where SVG and PDF are decoded: a child process per file when set, which the time limit
    /// can kill (see ``DecodeWorkerProcess``); this process when nil.
    public var isolation: DecodeWorkerProcess?
    private let pool: MediaWorkerPool

    /// Longest side of the picture the BlurHash is computed from.
    static let previewSize = 32

    public init(limits: MediaLimits = MediaLimits(), pool: MediaWorkerPool = MediaWorkerPool(), isolation: DecodeWorkerProcess? = nil) {
        self.limits = limits
        self.pool = pool
        self.isolation = isolation
    }

    /// Analyses the file at `path`.
    ///
    /// Problems with the content (unsupported, corrupt, too large, too slow) do not throw: the
    /// report still carries the MIME type, size, SHA-256 and category, and says what failed in
    /// ``MediaReport/error``.
    ///
    /// - Parameters:
    ///   - path: A regular file.
    ///   - filename: The name to report; defaults to the path's last component. Sanitised.
    ///   - thumbnail: When given, the report carries a thumbnail made in the same decode pass.
    ///   - depth: `.headers` reads only what headers say (type, dimensions, duration, codecs):
    ///     no SHA-256, no decoding, no placeholder, no thumbnail. For a client deciding what to send.
    ///   - knownSHA256: The file's SHA-256 (64 lowercase hex digits) when the caller computed it
    ///     over these exact bytes already, as the upload server does for a whole-file chunk
    ///     checksum; the file is then not read again to hash it. Anything else is ignored.
    /// - Throws: `MediaError` with code `.io` when the file cannot be read, `.overloaded` when
    ///   the worker queue is full.
    public func probe(fileAt path: String, filename: String? = nil, thumbnail: ThumbnailRequest? = nil,
                      depth: ProbeDepth = .full, knownSHA256: String? = nil) async throws -> MediaReport {
        let limits = self.limits, isolation = self.isolation
        return try await pool.run { worker in
            let started = ContinuousClock.now
            var report = try MediaAnalysis(worker: worker, limits: limits, isolation: isolation).probe(
                path: path, filename: filename ?? (path as NSString).lastPathComponent, thumbnail: thumbnail, depth: depth,
                knownSHA256: knownSHA256)
            report.elapsed = ContinuousClock.now - started
            return report
        }
    }

    /// Makes a thumbnail of the file at `path`: an image, a video's poster frame, a PDF's first
    /// page or an audio file's cover art.
    ///
    /// - Throws: `MediaError`: `.noThumbnail` for audio without cover art and for types that
    ///   have no picture, or the reason decoding failed.
    public func thumbnail(fileAt path: String, request: ThumbnailRequest) async throws -> Thumbnail {
        let limits = self.limits, isolation = self.isolation
        return try await pool.run { worker in
            try MediaAnalysis(worker: worker, limits: limits, isolation: isolation).thumbnail(path: path, request: request)
        }
    }

    /// The DCT scale (1, 2, 4 or 8) a JPEG of this displayed size is decoded at for `request`:
    /// the largest that still covers the box. A decoded picture kept at scale N
    /// (``ThumbnailRequest/decodedPicturePath``) serves every request whose scale is N or more.
    public static func jpegDecodeScale(displayedWidth: Int, displayedHeight: Int, for request: ThumbnailRequest) -> Int {
        VipsImaging.jpegShrink(header: ImageHeader(width: displayedWidth, height: displayedHeight, pages: 1, orientation: 1,
                                                   loader: "jpegload"), request: request)
    }

    /// Writes `path` re-encoded for upload to `outputPath` (whose suffix names the format, as
    /// ``ImagePreparation/Plan/suffix`` says): upright, at most `preparation.maxDimension` on
    /// each side, without metadata when asked. JPEG, WebP, HEIF and AVIF are written at Q90.
    ///
    /// - Throws: `MediaError`: `.tooLarge` over the pixel limit, `.corrupt` when libvips cannot
    ///   decode or encode it.
    public func prepareImage(fileAt path: String, attachment: Attachment, preparation: ImagePreparation,
                             to outputPath: String) async throws -> (width: Int, height: Int) {
        let limits = self.limits
        let pixels = (attachment.width ?? 0) * (attachment.height ?? 0)
        guard pixels <= limits.maxPixels else {
            throw MediaError(.tooLarge, "\(attachment.width ?? 0)×\(attachment.height ?? 0) exceeds the \(limits.maxPixels)-pixel limit")
        }
        return try await pool.run { _ in
            try VipsImaging.rewrite(path: path, maxDimension: preparation.maxDimension ?? 0,
                                    strip: preparation.stripMetadata, to: outputPath)
        }
    }
}
