import struct Foundation.Data
import MediagateWire

/// How a thumbnail should be made.
public struct ThumbnailRequest: Sendable, Hashable {
    /// How the picture meets the box.
    public enum Fit: String, Sendable, CaseIterable {
        /// Fill the box and crop the overflow around the centre.
        case cover
        /// Fit entirely inside the box, keeping the aspect ratio.
        case contain
    }

    /// The encoding of the thumbnail.
    public enum Format: String, Sendable, CaseIterable {
        case jpeg, webp, png

        public var mimeType: String {
            switch self {
            case .jpeg: "image/jpeg"
            case .webp: "image/webp"
            case .png: "image/png"
            }
        }

        public var fileExtension: String {
            switch self {
            case .jpeg: "jpg"
            case .webp: "webp"
            case .png: "png"
            }
        }
    }

    public var width: Int
    public var height: Int
    public var fit: Fit
    public var format: Format
    /// Encoder quality for JPEG and WebP, 1...100.
    public var quality: Int
    /// Where to also keep the decoded, upright picture the thumbnail is resized from (a Q90
    /// JPEG), when a large JPEG is decoded at a reduced DCT scale; nothing is written
    /// otherwise. A later thumbnail that ``MediaProcessor/jpegDecodeScale(displayedWidth:displayedHeight:for:)``
    /// puts at the same or a smaller scale can be made from it instead of the original.
    public var decodedPicturePath: String?

    public init(width: Int = 320, height: Int = 320, fit: Fit = .contain, format: Format = .jpeg, quality: Int = 80,
                decodedPicturePath: String? = nil) {
        self.width = max(1, width)
        self.height = max(1, height)
        self.fit = fit
        self.format = format
        self.quality = min(100, max(1, quality))
        self.decodedPicturePath = decodedPicturePath
    }
}

/// An encoded thumbnail, upright, never larger than the source, without metadata.
public struct Thumbnail: Sendable, Hashable {
    public var data: Data
    public var width: Int
    public var height: Int
    public var format: ThumbnailRequest.Format

    public init(data: Data, width: Int, height: Int, format: ThumbnailRequest.Format) {
        self.data = data
        self.width = width
        self.height = height
        self.format = format
    }
}

/// How much of a file ``MediaProcessor/probe(fileAt:filename:thumbnail:depth:knownSHA256:)`` reads.
public enum ProbeDepth: Sendable {
    /// Everything: SHA-256, decoding for the placeholder (and thumbnail), corruption found.
    case full
    /// Headers only: type, dimensions as displayed, pages, duration, codecs. A tenth of the
    /// time for a 12 MP JPEG; what a client needs before it uploads.
    case headers
}

/// The outcome of analysing one file.
///
/// A file the pipeline cannot fully decode still has its MIME type, size, SHA-256 and
/// category in ``attachment``; ``error`` then says what went wrong.
public struct MediaReport: Sendable {
    public var attachment: Attachment
    /// Present when a thumbnail was asked for and could be made.
    public var thumbnail: Thumbnail?
    public var error: MediaError?
    /// Time spent on a worker thread analysing the file, not counting time queued for one.
    public var elapsed: Duration

    public init(attachment: Attachment, thumbnail: Thumbnail? = nil, error: MediaError? = nil, elapsed: Duration = .zero) {
        self.attachment = attachment
        self.thumbnail = thumbnail
        self.error = error
        self.elapsed = elapsed
    }
}
