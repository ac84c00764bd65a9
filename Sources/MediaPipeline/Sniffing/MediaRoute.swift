import MediagateWire

/// Where a file goes after its bytes have been sniffed: which category a client shows it in and
/// which decoder, if any, may look inside it.
///
/// This table is the allow-list. A sniffed type that is not here reaches no decoder at all:
/// libvips would "load" a CSV as an image and FFmpeg would follow an HLS playlist's URLs.
struct MediaRoute: Sendable, Hashable {
    enum Decoder: Sendable, Hashable {
        /// libvips, and only if it picks one of `loaders` for the bytes.
        case vips(VipsRoute)
        /// FFmpeg, with exactly this demuxer.
        case ffmpeg(demuxer: String)
        /// Nothing decodes it; we report type, size and hash.
        case none
    }

    var kind: Attachment.Kind
    var decoder: Decoder

    static let other = MediaRoute(kind: .file, decoder: .none)
}

struct VipsRoute: Sendable, Hashable {
    /// Loader nicknames libvips may use for this type.
    var loaders: Set<String>
    /// Read through a VipsSource, so the loader has no file name to resolve other files against.
    var readsThroughSource = false
    /// Frames count as animation (GIF, WebP) rather than pages (PDF) or images (HEIF).
    var isAnimatable = false
    var isPaged = false
}

extension MediaRoute {
    /// The route for a sniffed MIME type.
    static func forMimeType(_ mimeType: String) -> MediaRoute {
        table[mimeType] ?? (documentTypes.contains(mimeType) ? MediaRoute(kind: .document, decoder: .none) : .other)
    }

    private static func image(_ loaders: String..., source: Bool = false, animatable: Bool = false) -> MediaRoute {
        MediaRoute(kind: .image, decoder: .vips(VipsRoute(loaders: Set(loaders), readsThroughSource: source, isAnimatable: animatable)))
    }

    private static func av(_ kind: Attachment.Kind, _ demuxer: String) -> MediaRoute {
        MediaRoute(kind: kind, decoder: .ffmpeg(demuxer: demuxer))
    }

    private static let table: [String: MediaRoute] = [
        "image/jpeg": image("jpegload"),
        "image/png": image("pngload"),
        "image/gif": image("gifload", animatable: true),
        "image/webp": image("webpload", animatable: true),
        "image/heic": image("heifload"),
        "image/heif": image("heifload"),
        "image/heic-sequence": image("heifload"),
        "image/heif-sequence": image("heifload"),
        "image/avif": image("heifload"),
        "image/tiff": image("tiffload"),
        // libvips 8.14 reads BMP only through ImageMagick, which it marks untrusted; it is
        // unblocked for this one sniffed type.
        "image/bmp": image("magickload"),
        "image/x-ms-bmp": image("magickload"),
        // librsvg from a source: no base file, so `<image href="file:///...">` resolves nowhere.
        "image/svg+xml": image("svgload_source", source: true),
        "application/pdf": MediaRoute(kind: .document, decoder: .vips(VipsRoute(loaders: ["pdfload"], isPaged: true))),

        // The kind here is a first guess: the streams decide (an audio-only MP4 is audio).
        "video/mp4": av(.video, "mov"),
        "video/quicktime": av(.video, "mov"),
        // 3GPP and 3GPP2: what phones record voice notes and MMS video in (AAC, AMR, H.263).
        "video/3gpp": av(.video, "mov"),
        "video/3gpp2": av(.video, "mov"),
        "audio/3gpp": av(.audio, "mov"),
        "audio/3gpp2": av(.audio, "mov"),
        "video/x-m4v": av(.video, "mov"),
        "audio/mp4": av(.audio, "mov"),
        "audio/x-m4a": av(.audio, "mov"),
        "video/webm": av(.video, "matroska"),
        "audio/webm": av(.audio, "matroska"),
        "video/x-matroska": av(.video, "matroska"),
        "audio/x-matroska": av(.audio, "matroska"),
        "video/x-msvideo": av(.video, "avi"),
        "video/ogg": av(.video, "ogg"),
        "audio/ogg": av(.audio, "ogg"),
        "audio/mpeg": av(.audio, "mp3"),
        "audio/flac": av(.audio, "flac"),
        "audio/x-flac": av(.audio, "flac"),
        "audio/x-wav": av(.audio, "wav"),
        "audio/wav": av(.audio, "wav"),
        "audio/vnd.wave": av(.audio, "wav"),
        "audio/aac": av(.audio, "aac"),
        "audio/x-aiff": av(.audio, "aiff"),
        "audio/aiff": av(.audio, "aiff"),
        // Windows Media: libmagic names every ASF file video/x-ms-asf; WMA is ASF with only sound.
        "video/x-ms-asf": av(.video, "asf"),
        "audio/x-ms-wma": av(.audio, "asf"),
        "video/x-ms-wmv": av(.video, "asf"),
        "audio/x-hx-aac-adts": av(.audio, "aac"),
    ]

    /// Types shown as documents but not decoded: text and office formats.
    private static let documentTypes: Set<String> = [
        "text/plain", "text/markdown", "text/csv", "text/rtf", "application/rtf",
        "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/epub+zip",
    ]
}

/// The MIME type a file name's extension claims. Used only to record a mismatch with what the
/// bytes say; it never decides anything.
enum ClaimedType {
    static func mimeType(forFileName name: String) -> String? {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        return byExtension[name[name.index(after: dot)...].lowercased()]
    }

    private static let byExtension: [String: String] = [
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
        "webp": "image/webp", "heic": "image/heic", "heif": "image/heif", "avif": "image/avif",
        "tif": "image/tiff", "tiff": "image/tiff", "bmp": "image/bmp", "svg": "image/svg+xml",
        "pdf": "application/pdf", "mp4": "video/mp4", "m4v": "video/x-m4v", "mov": "video/quicktime",
        "webm": "video/webm", "mkv": "video/x-matroska", "avi": "video/x-msvideo",
        "mp3": "audio/mpeg", "m4a": "audio/mp4", "aac": "audio/aac", "ogg": "audio/ogg",
        "opus": "audio/ogg", "flac": "audio/flac", "wav": "audio/x-wav",
        "3gp": "video/3gpp", "3g2": "video/3gpp2", "aif": "audio/x-aiff", "aiff": "audio/x-aiff",
        "wma": "audio/x-ms-wma", "wmv": "video/x-ms-wmv",
        "txt": "text/plain", "md": "text/markdown", "csv": "text/csv", "html": "text/html", "htm": "text/html",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt": "application/vnd.oasis.opendocument.text", "zip": "application/zip",
    ]
}
